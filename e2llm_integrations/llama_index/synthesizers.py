"""``E2LLMSynthesizer``: answer over retrieved nodes with one chunk (or a few) per node.

LlamaIndex's built-in response modes join node texts into one prompt string. This
synthesizer instead chunks and encodes every node on its own (reusing chunks that
:class:`~e2llm_integrations.llama_index.E2LLMNodePostprocessor` already encoded), so node
boundaries reach the model intact and no chunk spans two nodes.

With selective expansion the chunks most similar to the query are also shown as raw
text; the response says which (``metadata["e2llm_sources"]``) and from which retrieved
nodes (``metadata["e2llm_expanded_node_ids"]``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers.base import BaseSynthesizer, QueryTextType
from llama_index.core.schema import NodeWithScore
from llama_index.core.settings import Settings
from llama_index.core.types import RESPONSE_TEXT_TYPE

from ..core.corpus import EncodedCorpus
from ..core.expansion import Source, check_top_k
from ..core.generation import GenerationChunk, Usage
from ..core.pipeline import E2LLMPipeline
from ..core.runtime import aiter_in_thread, aprime, prime
from .llms import E2LLM
from .postprocessors import check_texts, node_cache

logger = logging.getLogger(__name__)

OnEmpty = Literal["raise", "respond"]

SOURCES_KEY = "e2llm_sources"
"""``Response.metadata`` key: the expanded chunks, as ``Source.to_dict()`` records."""
EXPANDED_NODES_KEY = "e2llm_expanded_node_ids"
"""``Response.metadata`` key: ids of the retrieved nodes that had a chunk expanded."""
_PROVENANCE = "e2llm_provenance"


@dataclass
class _Provenance:
    """One synthesis call's node ids in, expanded chunks out (travels in response_kwargs)."""

    node_ids: list[str]
    sources: list[Source] = field(default_factory=list)

    def annotate(self, response: RESPONSE_TYPE) -> RESPONSE_TYPE:
        metadata = response.metadata if response.metadata is not None else {}
        metadata[SOURCES_KEY] = [s.to_dict() for s in self.sources]
        known = set(self.node_ids)
        expanded = [s.doc_id for s in self.sources if s.doc_id in known]
        metadata[EXPANDED_NODES_KEY] = list(dict.fromkeys(expanded))
        response.metadata = metadata
        return response


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
        expand_top_k: Chunks most similar to the query also shown as raw text (selective
            expansion); ``None``: the ``llm``'s ``expand_top_k`` (by default the core's,
            :data:`~e2llm_integrations.core.options.DEFAULT_EXPAND_TOP_K`), 0: soft tokens
            only.
        callback_manager: LlamaIndex callback manager.

    Provenance: ``response.source_nodes`` stay the retrieved nodes;
    ``response.metadata["e2llm_sources"]`` lists the expanded chunks (``Source.to_dict()``
    records in node order; ``doc_id`` is the node's id, ``start``/``end`` offsets into
    the node's text as the LLM reads it, metadata included) and
    ``response.metadata["e2llm_expanded_node_ids"]`` the ids of the nodes they come from.
    Streaming responses carry both from the start. :attr:`last_usage` counts them
    (``expanded_chunks``) and :attr:`last_sources` keeps the latest ones.

    ``index.as_query_engine(response_synthesizer=...)`` reads ``Settings.llm`` first; where
    none is set and OpenAI's integration is missing, this synthesizer's ``E2LLM`` takes its
    place (:func:`stand_in_for_settings_llm`). :func:`create_e2llm_query_engine` needs no
    ``Settings.llm`` at all.

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
        expand_top_k: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if llm is not None and not isinstance(llm, E2LLM):
            raise TypeError(
                f"llm must be an E2LLM, got {type(llm).__name__}; for other LLMs use "
                "LlamaIndex's get_response_synthesizer()."
            )
        if on_empty not in ("raise", "respond"):
            raise ValueError(f"on_empty must be 'raise' or 'respond', got {on_empty!r}.")
        if expand_top_k is not None:
            check_top_k(expand_top_k)
        self._e2llm = llm if llm is not None else _default_llm(pipeline)
        super().__init__(llm=self._e2llm, callback_manager=callback_manager, streaming=streaming)
        stand_in_for_settings_llm(self._e2llm)
        self._system_prompt = system_prompt
        self._on_empty = on_empty
        self._expand_top_k = expand_top_k
        # Usage of the most recently finished answer (soft tokens, compression ratio...).
        self.last_usage: Usage | None = None
        # The chunks the most recent answer showed as raw text.
        self.last_sources: list[Source] = []

    @property
    def pipeline(self) -> E2LLMPipeline:
        return self._e2llm.pipeline

    @property
    def expand_top_k(self) -> int | None:
        """Chunks shown as raw text: this synthesizer's setting, else its ``llm``'s."""
        return self._expand_top_k if self._expand_top_k is not None else self._e2llm.expand_top_k

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """E2LLM's prompt layout is fixed by the checkpoint; there is no template to update."""

    # ------------------------------------------------------------------ encoding
    def encode_nodes(
        self, text_chunks: Sequence[str], node_ids: Sequence[str] | None = None
    ) -> EncodedCorpus:
        """The nodes' chunks in node order, each node chunked on its own (cached).

        Each chunk's ``doc_id`` is its node's id from ``node_ids``, else the node's position.
        """
        check_texts(text_chunks)
        if node_ids is not None and len(node_ids) != len(text_chunks):
            raise ValueError(
                f"Got {len(node_ids)} node ids for {len(text_chunks)} node texts; pass one id "
                "per text (or none)."
            )
        parts = node_cache(self.pipeline).encode(text_chunks)
        names = [str(i) for i in range(len(parts))] if node_ids is None else list(node_ids)
        return EncodedCorpus.concat(
            [part.cited_as(name) for part, name in zip(parts, names, strict=True)]
        )

    def _stream(
        self, query_str: str, text_chunks: Sequence[str], record: _Provenance | None = None
    ) -> Iterator[GenerationChunk]:
        node_ids = record.node_ids if record is not None else None
        corpus = self._e2llm.prefilter(self.encode_nodes(text_chunks, node_ids), query_str)
        cfg = self._e2llm._generation({})
        pipe = self.pipeline
        # Prepared before the first token, so a streaming response carries the sources.
        corpus, sources, kwargs = pipe.prepare(
            corpus, query_str, cfg, self.expand_top_k, system=self._system_prompt
        )
        stream = pipe.stream_prepared(corpus, sources, query_str, cfg, kwargs)
        if record is not None:
            record.sources = sources
        return prime(self._track(stream))

    def _track(self, chunks: Iterator[GenerationChunk]) -> Iterator[GenerationChunk]:
        for chunk in chunks:
            if chunk.usage is not None:
                self.last_usage = chunk.usage
                self.last_sources = list(chunk.sources)
            yield chunk

    def _answer(
        self, query_str: str, text_chunks: Sequence[str], record: _Provenance | None = None
    ) -> str:
        return "".join(chunk.text for chunk in self._stream(query_str, text_chunks, record))

    # ------------------------------------------------------------------ BaseSynthesizer
    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Answer ``query_str`` over ``text_chunks``; a text generator when streaming."""
        record = response_kwargs.get(_PROVENANCE)
        if self._streaming:
            return _texts(self._stream(query_str, text_chunks, record))
        return self._answer(query_str, text_chunks, record)

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Like :meth:`get_response` off the event loop; an async text generator when streaming."""
        record = response_kwargs.get(_PROVENANCE)
        if self._streaming:
            stream = aiter_in_thread(lambda: _texts(self._stream(query_str, text_chunks, record)))
            return await aprime(stream)  # type: ignore[return-value]
        return await asyncio.to_thread(self._answer, query_str, text_chunks, record)

    def synthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        self._check_nodes(nodes)
        record = _Provenance([n.node.node_id for n in nodes])
        response = super().synthesize(
            query, nodes, additional_source_nodes, **response_kwargs, **{_PROVENANCE: record}
        )
        return record.annotate(response)

    async def asynthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        self._check_nodes(nodes)
        record = _Provenance([n.node.node_id for n in nodes])
        response = await super().asynthesize(
            query, nodes, additional_source_nodes, **response_kwargs, **{_PROVENANCE: record}
        )
        return record.annotate(response)

    def _check_nodes(self, nodes: list[NodeWithScore]) -> None:
        if not nodes and self._on_empty == "raise":
            check_texts([])  # raises the "no nodes" ValueError


def stand_in_for_settings_llm(llm: E2LLM) -> bool:
    """Make ``llm`` LlamaIndex's ``Settings.llm`` where none is set and none can load.

    ``index.as_query_engine(response_synthesizer=...)`` reads ``Settings.llm`` before it
    looks at the synthesizer, and LlamaIndex's default there is OpenAI, which fails when
    ``llama-index-llms-openai`` is not installed. So in that case only (nothing set, no
    OpenAI integration) the synthesizer's E2LLM takes the place; ``Settings.llm`` set by
    the user, or a loadable default, is never replaced. Returns whether it took the place.
    """
    if getattr(Settings, "_llm", None) is not None or _openai_installed():
        return False
    Settings.llm = llm
    logger.info(
        "No Settings.llm is set and llama-index-llms-openai is not installed: using this "
        "E2LLM as Settings.llm (set Settings.llm yourself, or use create_e2llm_query_engine)."
    )
    return True


def _openai_installed() -> bool:
    try:
        return importlib.util.find_spec("llama_index.llms.openai") is not None
    except ModuleNotFoundError:  # not even the llama_index.llms namespace
        return False


def _default_llm(pipeline: E2LLMPipeline | None) -> E2LLM:
    return E2LLM.from_pipeline(pipeline) if pipeline is not None else E2LLM()


def _texts(chunks: Iterator[GenerationChunk]) -> Generator[str, None, None]:
    for chunk in chunks:
        if chunk.text:
            yield chunk.text
