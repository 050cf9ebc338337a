"""``E2LLMSynthesizer``: answer over retrieved nodes with one chunk (or a few) per node.

LlamaIndex's built-in response modes join node texts into one prompt string. This
synthesizer instead chunks and encodes every node on its own (reusing chunks that
:class:`~e2llm_integrations.llama_index.E2LLMNodePostprocessor` already encoded), so node
boundaries reach the model intact and no chunk spans two nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterator, Sequence
from typing import Any, Literal

from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers.base import BaseSynthesizer, QueryTextType
from llama_index.core.schema import NodeWithScore
from llama_index.core.types import RESPONSE_TEXT_TYPE

from ..core.corpus import EncodedCorpus
from ..core.generation import GenerationChunk, Usage
from ..core.pipeline import E2LLMPipeline
from ._common import aiter_in_thread, aprime, prime
from .llms import E2LLM
from .postprocessors import check_texts, node_cache

logger = logging.getLogger(__name__)

OnEmpty = Literal["raise", "respond"]


class E2LLMSynthesizer(BaseSynthesizer):
    """Response synthesizer that gives E2LLM each retrieved node as its own chunk(s).

    Args:
        llm: The :class:`E2LLM` whose pipeline, decoding options and prefilter
            (``top_k`` / ``score_threshold``, applied to the nodes' chunks) are used.
            Default: ``E2LLM(pipeline=pipeline)``.
        pipeline: A loaded pipeline to build the default ``llm`` around.
        streaming: Return a streaming response (a text generator).
        system_prompt: Optional system message for the decoder.
        on_empty: With no nodes, ``"raise"`` a ``ValueError`` (default) or ``"respond"``
            with LlamaIndex's empty response.
        callback_manager: LlamaIndex callback manager.

    Example:
        >>> synth = E2LLMSynthesizer(E2LLM(max_new_tokens=64), streaming=True)  # doctest: +SKIP
        >>> engine = index.as_query_engine(response_synthesizer=synth)  # doctest: +SKIP
        >>> for text in engine.query("Who founded the city?").response_gen:  # doctest: +SKIP
        ...     print(text, end="")
    """

    def __init__(
        self,
        llm: E2LLM | None = None,
        *,
        pipeline: E2LLMPipeline | None = None,
        streaming: bool = False,
        system_prompt: str | None = None,
        on_empty: OnEmpty = "raise",
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if llm is not None and not isinstance(llm, E2LLM):
            raise TypeError(
                f"llm must be an E2LLM, got {type(llm).__name__}; for other LLMs use "
                "LlamaIndex's get_response_synthesizer()."
            )
        if on_empty not in ("raise", "respond"):
            raise ValueError(f"on_empty must be 'raise' or 'respond', got {on_empty!r}.")
        self._e2llm = llm if llm is not None else _default_llm(pipeline)
        super().__init__(llm=self._e2llm, callback_manager=callback_manager, streaming=streaming)
        self._system_prompt = system_prompt
        self._on_empty = on_empty
        # Usage of the most recently finished answer (soft tokens, compression ratio...).
        self.last_usage: Usage | None = None

    @property
    def pipeline(self) -> E2LLMPipeline:
        return self._e2llm.pipeline

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """E2LLM's prompt layout is fixed by the checkpoint; there is no template to update."""

    # ------------------------------------------------------------------ encoding
    def encode_nodes(self, text_chunks: Sequence[str]) -> EncodedCorpus:
        """The nodes' chunks in node order, each node chunked on its own (cached)."""
        check_texts(text_chunks)
        return EncodedCorpus.concat(node_cache(self.pipeline).encode(text_chunks))

    def _stream(self, query_str: str, text_chunks: Sequence[str]) -> Iterator[GenerationChunk]:
        corpus = self._e2llm.prefilter(self.encode_nodes(text_chunks), query_str)
        cfg = self._e2llm._generation({})
        return prime(
            self._track(self.pipeline.stream(corpus, query_str, cfg, system=self._system_prompt))
        )

    def _track(self, chunks: Iterator[GenerationChunk]) -> Iterator[GenerationChunk]:
        for chunk in chunks:
            if chunk.usage is not None:
                self.last_usage = chunk.usage
            yield chunk

    def _answer(self, query_str: str, text_chunks: Sequence[str]) -> str:
        return "".join(chunk.text for chunk in self._stream(query_str, text_chunks))

    # ------------------------------------------------------------------ BaseSynthesizer
    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Answer ``query_str`` over ``text_chunks``; a text generator when streaming."""
        if self._streaming:
            return _texts(self._stream(query_str, text_chunks))
        return self._answer(query_str, text_chunks)

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Like :meth:`get_response` off the event loop; an async text generator when streaming."""
        if self._streaming:
            stream = aiter_in_thread(lambda: _texts(self._stream(query_str, text_chunks)))
            return await aprime(stream)  # type: ignore[return-value]
        return await asyncio.to_thread(self._answer, query_str, text_chunks)

    def synthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        self._check_nodes(nodes)
        return super().synthesize(query, nodes, additional_source_nodes, **response_kwargs)

    async def asynthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        self._check_nodes(nodes)
        return await super().asynthesize(query, nodes, additional_source_nodes, **response_kwargs)

    def _check_nodes(self, nodes: list[NodeWithScore]) -> None:
        if not nodes and self._on_empty == "raise":
            check_texts([])  # raises the "no nodes" ValueError


def _default_llm(pipeline: E2LLMPipeline | None) -> E2LLM:
    return E2LLM.from_pipeline(pipeline) if pipeline is not None else E2LLM()


def _texts(chunks: Iterator[GenerationChunk]) -> Generator[str, None, None]:
    for chunk in chunks:
        if chunk.text:
            yield chunk.text
