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

    LangChain's ``create_e2llm_rag_chain`` for LlamaIndex: each node reaches the model as
    its own chunk(s) (:class:`E2LLMSynthesizer`), and nothing reads ``Settings.llm`` (no
    OpenAI needed). The other arguments are :class:`E2LLMSynthesizer`'s.

    Args:
        index_or_retriever: An index (its ``as_retriever()`` is used) or a retriever.
        llm: The E2LLM that answers. Default: ``E2LLM()`` (loaded on the first query).
        node_postprocessors: Run on the retrieved nodes in order, e.g. an
            :class:`E2LLMNodePostprocessor` (the synthesizer reuses its encoded nodes).
        similarity_top_k: Nodes the index retrieves (default: the index's own); for a
            retriever, set it on the retriever instead.

    Example:
        >>> index = VectorStoreIndex.from_documents(docs, embed_model=embed)  # doctest: +SKIP
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
