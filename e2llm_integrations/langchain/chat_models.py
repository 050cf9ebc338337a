"""``E2LLMChat``: a LangChain chat model that reads long documents as soft tokens."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from ..core.corpus import EncodedCorpus
from ..core.generation import GenerationConfig, Usage
from ..core.pipeline import E2LLMPipeline
from ..core.registry import get_pipeline
from ._messages import DocumentSource, parse_messages, sources_from_documents
from ._runtime import empty_corpus, encode_texts, stored_corpus

logger = logging.getLogger(__name__)

_CALL_OPTIONS = {"documents", "temperature", "max_tokens", "top_p", "seed", "model", "stream"}
_DONE = object()


class E2LLMChat(BaseChatModel):
    """E2LLM as a LangChain chat model: every document chunk becomes one soft token.

    Documents reach the model three ways, all encoded by the E2LLM chunk encoder:

    * ``text-plain`` content blocks in a human message (``title`` goes on the first line);
    * the ``documents=`` call argument (``str`` or ``Document``; documents returned by
      :class:`E2LLMDocumentCompressor` carry their encoded chunks and are not re-encoded);
    * a long plain-string prompt ("stuff" chains): when the last human turn is longer than
      ``auto_context_chars``, its last paragraph (else last line, else last sentence; a
      trailing ``Answer:`` cue stays attached) is the question and the rest is context.

    System messages become the system prompt; earlier human/AI turns are chat history.
    Weights load lazily on first use and are shared by every instance with the same
    ``checkpoint`` and ``device``. Tool calling and structured output are not supported.

    Example:
        >>> chat = E2LLMChat.from_pretrained(max_tokens=64)  # doctest: +SKIP
        >>> msg = HumanMessage(content=[
        ...     {"type": "text-plain", "mime_type": "text/plain", "text": report, "title": "Q3"},
        ...     {"type": "text", "text": "What was the revenue?"},
        ... ])  # doctest: +SKIP
        >>> chat.invoke([msg]).content  # doctest: +SKIP
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    checkpoint: str | None = Field(
        default=None,
        description="E2LLM checkpoint folder; None uses the shipped default checkpoint.",
    )
    device: str | None = Field(
        default=None, description="Torch device ('cpu', 'cuda', ...); None picks CUDA if present."
    )
    model_name: str | None = Field(
        default=None,
        alias="model",
        description="Name reported in metadata and traces; defaults to one made from checkpoint.",
    )
    temperature: float = Field(default=0.0, ge=0.0, description="0 decodes greedily.")
    max_tokens: int = Field(default=256, gt=0, description="Maximum tokens to generate.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: list[str] | None = Field(default=None, description="Strings that end generation.")
    seed: int | None = Field(default=None, description="Sampling seed; None is not reproducible.")
    streaming: bool = Field(default=False, description="Generate through the streaming path.")
    auto_context_chars: int | None = Field(
        default=2000,
        gt=0,
        description="A last human turn longer than this is split into context + question; "
        "None disables the split.",
    )
    pipeline: E2LLMPipeline | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="An already-built pipeline to use instead of loading `checkpoint`.",
    )

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> E2LLMChat:
        """A chat model over ``checkpoint`` (default: the shipped one); weights load lazily.

        Example:
            >>> chat = E2LLMChat.from_pretrained("checkpoints/my-run", max_tokens=32)
        """
        return cls(checkpoint=None if checkpoint is None else str(checkpoint), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "e2llm-chat"

    @property
    def resolved_model_name(self) -> str:
        """The configured ``model_name``, else ``e2llm`` plus the checkpoint folder name."""
        if self.model_name:
            return self.model_name
        return f"e2llm:{Path(self.checkpoint).name}" if self.checkpoint else "e2llm:default"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.resolved_model_name,
            "checkpoint": self.checkpoint,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="e2llm",
            ls_model_name=kwargs.get("model") or self.resolved_model_name,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def get_pipeline(self) -> E2LLMPipeline:
        """The injected pipeline, or the shared one for ``checkpoint``/``device`` (loads once)."""
        return (
            self.pipeline
            if self.pipeline is not None
            else get_pipeline(self.checkpoint, self.device)
        )

    # ------------------------------------------------------------------ request building
    def _generation_config(
        self, stop: list[str] | None, options: dict[str, Any]
    ) -> GenerationConfig:
        stops = stop if stop is not None else self.stop
        return GenerationConfig(
            max_new_tokens=options.get("max_tokens", self.max_tokens),
            temperature=options.get("temperature", self.temperature),
            top_p=options.get("top_p", self.top_p),
            stop=tuple(stops or ()),
            seed=options.get("seed", self.seed),
        )

    def _check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - _CALL_OPTIONS)
        if unknown:
            raise TypeError(
                f"E2LLMChat got unsupported call option(s) {unknown}; it accepts "
                f"{sorted(_CALL_OPTIONS - {'stream'})} (tools and structured output are not supported)."
            )
        model = options.get("model")
        if model and model != self.resolved_model_name:
            raise ValueError(
                f"E2LLMChat cannot switch models per call (got model={model!r}); build another "
                "E2LLMChat(checkpoint=...) instead."
            )

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> tuple[E2LLMPipeline, EncodedCorpus, str, dict[str, Any], GenerationConfig]:
        """Validate the call and encode its documents: (pipeline, corpus, question, prompt, gen)."""
        self._check_options(options)
        gen = self._generation_config(stop, options)
        request = parse_messages(messages, self.auto_context_chars)
        sources = request.sources
        if options.get("documents") is not None:
            sources = sources + sources_from_documents(options["documents"])
        pipeline = self.get_pipeline()
        corpus = build_corpus(pipeline, sources)
        prompt = {"system": request.system, "history": request.history}
        return pipeline, corpus, request.question, prompt, gen

    def _metadata(self, finish_reason: str, usage: Usage) -> dict[str, Any]:
        return {
            "model_name": self.resolved_model_name,
            "finish_reason": finish_reason,
            "compression_ratio": round(usage.compression_ratio, 3),
            "context_tokens": usage.context_tokens,
            "soft_tokens": usage.soft_tokens,
            "n_chunks": usage.n_chunks,
        }

    # ------------------------------------------------------------------ generation
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        pipeline, corpus, question, prompt, gen = self._prepare(messages, stop, kwargs)
        result = pipeline.ask(corpus, question, gen, **prompt)
        usage = result.usage
        message = AIMessage(
            content=result.text,
            usage_metadata=_usage_metadata(usage.input_positions, usage.output_tokens),
            response_metadata=self._metadata(result.finish_reason, usage),
        )
        info = {"finish_reason": result.finish_reason}
        return ChatResult(generations=[ChatGeneration(message=message, generation_info=info)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pipeline, corpus, question, prompt, gen = self._prepare(messages, stop, kwargs)
        pending = input_positions(pipeline, corpus, question, prompt)
        for piece in pipeline.stream(corpus, question, gen, **prompt):
            if piece.usage is None:
                usage = _usage_metadata(pending, 0) if pending else None
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(content=piece.text, usage_metadata=usage)
                )
                pending = 0
                if run_manager:
                    run_manager.on_llm_new_token(piece.text, chunk=chunk)
                yield chunk
                continue
            finish = piece.finish_reason or "stop"
            last = AIMessageChunk(
                content="",
                chunk_position="last",
                usage_metadata=_usage_metadata(pending, piece.usage.output_tokens),
                response_metadata=self._metadata(finish, piece.usage),
            )
            yield ChatGenerationChunk(message=last, generation_info={"finish_reason": finish})

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # The sync stream holds the pipeline's lock across tokens, so it must run start to
        # end on one thread; chunks cross to the event loop through a queue.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def post(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed: nobody is listening any more
                cancel.set()

        def produce() -> None:
            stream = self._stream(messages, stop, None, **kwargs)
            try:
                for chunk in stream:
                    if cancel.is_set():
                        break
                    post(chunk)
            except Exception as err:  # re-raised on the event loop
                post(err)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:  # release the pipeline lock on this thread
                    close()
                post(_DONE)

        worker = loop.run_in_executor(None, produce)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                if run_manager and item.text:
                    await run_manager.on_llm_new_token(item.text, chunk=item)
                yield item
            await worker
        finally:
            cancel.set()


def _usage_metadata(input_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def input_positions(
    pipeline: E2LLMPipeline, corpus: EncodedCorpus, question: str, prompt: dict[str, Any]
) -> int:
    """Decoder input positions a call will use: prompt tokens + soft tokens."""
    model = pipeline.model
    with pipeline.lock, torch.inference_mode():
        n_soft = model.soft_tokens(corpus.features, corpus.mask).shape[0]
        return len(model.prompt(question, **prompt)) + int(n_soft)


def _stored(pipeline: E2LLMPipeline, source: DocumentSource) -> EncodedCorpus | None:
    """The encoded chunks behind ``source.handle``, if still stored and compatible."""
    if source.handle is None:
        return None
    corpus = stored_corpus(pipeline, source.handle)
    if corpus is not None:
        return corpus
    if not source.text.strip():
        raise ValueError(
            f"Encoded chunks {source.handle!r} are gone (evicted, another process, or made with "
            "other encoder settings) and the document has no text to re-encode; run the "
            "E2LLMDocumentCompressor again."
        )
    logger.warning(
        "Encoded chunks %s are unavailable or incompatible with this model; re-encoding the text.",
        source.handle,
    )
    return None


def build_corpus(pipeline: E2LLMPipeline, sources: Sequence[DocumentSource]) -> EncodedCorpus:
    """One corpus for ``sources`` in order: stored chunks reused, texts encoded in one pass."""
    parts: list[EncodedCorpus | None] = [_stored(pipeline, s) for s in sources]
    missing = [i for i, part in enumerate(parts) if part is None]
    if missing:
        encoded = encode_texts(pipeline, [_titled(sources[i]) for i in missing])
        for i, corpus in zip(missing, encoded, strict=True):
            parts[i] = corpus
    kept = [p for p in parts if p is not None and len(p)]
    return EncodedCorpus.concat(kept) if kept else empty_corpus(pipeline)


def _titled(source: DocumentSource) -> str:
    return f"{source.title}\n\n{source.text}" if source.title else source.text
