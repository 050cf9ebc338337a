"""One sentence-transformers embedder behind both frameworks' embedding classes."""

from __future__ import annotations

import numpy as np
import pytest

from e2llm_integrations.langchain import LocalSentenceEmbeddings
from e2llm_integrations.llama_index import SentenceTransformerEmbedding
from e2llm_integrations.retrieval.embeddings import SentenceEmbedder

TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply."]


def test_both_wrappers_share_one_model_and_agree() -> None:
    langchain = LocalSentenceEmbeddings(device="cpu")
    llama = SentenceTransformerEmbedding(device="cpu")
    assert langchain.client is llama.model is SentenceEmbedder(device="cpu").model  # loaded once
    np.testing.assert_allclose(
        langchain.embed_documents(TEXTS), llama.get_text_embedding_batch(TEXTS), atol=1e-6
    )
    assert langchain.embed_query(TEXTS[0]) == pytest.approx(llama.get_query_embedding(TEXTS[0]))
    assert langchain.embed_documents([]) == []


def test_prefix_and_bad_input() -> None:
    embedder = SentenceEmbedder(device="cpu")
    plain, prefixed = embedder.embed(TEXTS[:1]), embedder.embed(TEXTS[:1], prefix="query: ")
    assert np.linalg.norm(plain[0]) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(plain, prefixed)
    with pytest.raises(TypeError, match="Text 1 is a int; embed str only"):
        embedder.embed(["fine", 3])  # type: ignore[list-item]
