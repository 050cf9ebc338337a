"""``E2LLMSynthesizer``: answer over retrieved nodes, each node chunked and encoded on its own.

LlamaIndex's built-in modes join node texts into one prompt; here no chunk spans two nodes.
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

from ..core.chat import answer_stream
from ..core.corpus import EncodedCorpus
from ..core.expansion import Source, check_top_k
from ..core.generation import GenerationChunk
from ..core.pipeline import E2LLMPipeline
from ..core.runtime import LastCall, ReportsLastCall, aiter_in_thread, aprime, prime
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


class E2LLMSynthesizer(ReportsLastCall, BaseSynthesizer):
    """Response synthesizer that gives E2LLM each retrieved node as its own chunk(s).

    Chunks the :class:`E2LLMNodePostprocessor` encoded are reused. The response's
    ``metadata["e2llm_sources"]`` cites the expanded chunks (``doc_id``: the node id;
    ``start``/``end``: offsets into the node text the LLM reads) and
    ``metadata["e2llm_expanded_node_ids"]`` their nodes, also when streaming; the last
    answer's usage and sources are :attr:`last_usage` and :attr:`last_sources`. See the
    README's LlamaIndex section, and :func:`stand_in_for_settings_llm` for ``Settings.llm``.

    Args:
        llm: The :class:`E2LLM` whose pipeline, decoding options and ``top_k`` /
            ``score_threshold`` prefilter are used. Default: ``E2LLM(pipeline=pipeline)``.
        pipeline: A loaded pipeline to build the default ``llm`` around.
        streaming: Return a streaming response (a text generator).
        system_prompt: Optional system message for the decoder.
        on_empty: With no nodes, ``"raise"`` a ``ValueError`` (default) or ``"respond"``
            with LlamaIndex's empty response.
        expand_top_k: Chunks most similar to the query also shown as raw text; ``None``:
            the ``llm``'s; 0: soft tokens only.
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
        self._last = LastCall()

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
        """The nodes' chunks in node order (cached; ``doc_id``: the node id, else position)."""
        return node_cache(self.pipeline).corpus(text_chunks, node_ids)

    def _stream(
        self, query_str: str, text_chunks: Sequence[str], record: _Provenance | None = None
    ) -> Iterator[GenerationChunk]:
        node_ids = record.node_ids if record is not None else None
        corpus = self._e2llm.prefilter(self.encode_nodes(text_chunks, node_ids), query_str)
        cfg = self._e2llm._generation({})
        # Prepared before the first token, so a streaming response carries the sources.
        stream = answer_stream(
            self.pipeline, corpus, query_str, cfg, self.expand_top_k, system=self._system_prompt
        )
        if record is not None:
            record.sources = stream.sources
        return prime(self._last.track(stream))

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
        record, kwargs = self._provenance(nodes, response_kwargs)
        return record.annotate(super().synthesize(query, nodes, additional_source_nodes, **kwargs))

    async def asynthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        record, kwargs = self._provenance(nodes, response_kwargs)
        response = await super().asynthesize(query, nodes, additional_source_nodes, **kwargs)
        return record.annotate(response)

    def _provenance(
        self, nodes: list[NodeWithScore], response_kwargs: dict[str, Any]
    ) -> tuple[_Provenance, dict[str, Any]]:
        """Check ``nodes``; a record for their provenance and the kwargs that carry it."""
        if not nodes and self._on_empty == "raise":
            check_texts([])  # raises the "no nodes" ValueError
        record = _Provenance([n.node.node_id for n in nodes])
        return record, {**response_kwargs, _PROVENANCE: record}


def stand_in_for_settings_llm(llm: E2LLM) -> bool:
    """Make ``llm`` LlamaIndex's ``Settings.llm`` where none is set and none can load.

    ``index.as_query_engine(response_synthesizer=...)`` reads ``Settings.llm`` first, whose
    default (OpenAI) fails without ``llama-index-llms-openai``; only then (nothing set, no
    OpenAI) does ``llm`` take the place. Returns whether it did.
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
