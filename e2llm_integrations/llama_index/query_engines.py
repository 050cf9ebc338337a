"""``create_e2llm_query_engine``: a LlamaIndex query engine that E2LLM answers, no other LLM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.indices.base import BaseIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine

from .llms import E2LLM
from .synthesizers import E2LLMSynthesizer, OnEmpty


def create_e2llm_query_engine(
    index_or_retriever: BaseIndex[Any] | BaseRetriever,
    llm: E2LLM | None = None,
    node_postprocessors: Sequence[BaseNodePostprocessor] = (),
    *,
    similarity_top_k: int | None = None,
    streaming: bool = False,
    system_prompt: str | None = None,
    expand_top_k: int | None = None,
    on_empty: OnEmpty = "raise",
) -> RetrieverQueryEngine:
    """Retrieve nodes, optionally postprocess them, and answer with E2LLM.

    The LlamaIndex counterpart of LangChain's ``create_e2llm_rag_chain``: every retrieved
    node reaches the model as its own chunk(s) through :class:`E2LLMSynthesizer`, and
    nothing reads LlamaIndex's ``Settings.llm``, so no OpenAI package or key is needed.
    Responses carry the expanded chunks in ``metadata["e2llm_sources"]``.

    Args:
        index_or_retriever: An index (its ``as_retriever()`` is used; a vector index
            embeds queries with the embedding model it was built with) or a retriever.
        llm: The E2LLM that answers; its decoding options and ``top_k`` /
            ``score_threshold`` prefilter apply. Default: ``E2LLM()`` (the shipped
            checkpoint, loaded on the first query).
        node_postprocessors: Run on the retrieved nodes in order, e.g. an
            :class:`E2LLMNodePostprocessor` over the same pipeline (it encodes the nodes
            once; the synthesizer reuses them).
        similarity_top_k: Nodes the index retrieves (default: the index's own); for a
            retriever, set it on the retriever instead.
        streaming: Return streaming responses (``response.response_gen``).
        system_prompt: Optional system message for the decoder.
        expand_top_k: Chunks also shown as raw text; ``None``: the ``llm``'s.
        on_empty: With no nodes, ``"raise"`` a ``ValueError`` or ``"respond"`` empty.

    Example:
        >>> index = VectorStoreIndex.from_documents(
        ...     docs, embed_model=SentenceTransformerEmbedding()
        ... )  # doctest: +SKIP
        >>> engine = create_e2llm_query_engine(index, similarity_top_k=8)  # doctest: +SKIP
        >>> engine.query("Who founded the city?").response  # doctest: +SKIP
    """
    if isinstance(index_or_retriever, BaseIndex):
        top_k = {} if similarity_top_k is None else {"similarity_top_k": similarity_top_k}
        retriever = index_or_retriever.as_retriever(**top_k)
    elif isinstance(index_or_retriever, BaseRetriever):
        if similarity_top_k is not None:
            raise ValueError(
                "similarity_top_k applies to an index; a retriever was given: build it with "
                "the number of nodes it should return (e.g. index.as_retriever(similarity_top_k=8))."
            )
        retriever = index_or_retriever
    else:
        raise TypeError(
            "create_e2llm_query_engine takes a LlamaIndex index or retriever, got "
            f"{type(index_or_retriever).__name__}."
        )
    synthesizer = E2LLMSynthesizer(
        llm,
        streaming=streaming,
        system_prompt=system_prompt,
        on_empty=on_empty,
        expand_top_k=expand_top_k,
    )
    return RetrieverQueryEngine(retriever, synthesizer, list(node_postprocessors))
