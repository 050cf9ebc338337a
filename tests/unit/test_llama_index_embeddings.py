"""``SentenceTransformerEmbedding``: the bundled MiniLM as LlamaIndex's embed model (offline)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from e2llm_integrations.llama_index import SentenceTransformerEmbedding

from . import llama_index_support as support
from .llama_index_support import PASSAGES

embed_model = support.embed_model  # shared fixture
prose_index = support.prose_index  # shared fixture


def test_construction_is_lazy() -> None:
    model = SentenceTransformerEmbedding(model_name="/does/not/exist")
    assert model._model is None
    assert model.class_name() == "SentenceTransformerEmbedding"
    with pytest.raises(Exception, match="exist|not found|Repo id|directory"):
        _ = model.model


def test_embeddings_are_normalised_and_semantic(embed_model: Any) -> None:
    assert embed_model.dimension == 384
    cat, kitten, market = (
        np.array(v)
        for v in embed_model.get_text_embedding_batch(
            [
                "The cat sat on the mat.",
                "A kitten was sitting on a rug.",
                "Stock markets fell sharply.",
            ]
        )
    )
    assert np.linalg.norm(cat) == pytest.approx(1.0, abs=1e-5)
    assert cat @ kitten > cat @ market + 0.2


def test_retrieval_finds_the_right_passage(prose_index: Any) -> None:
    retriever = prose_index.as_retriever(similarity_top_k=1)
    for question, name in [
        ("What makes spring tides so large?", "tides"),
        ("Who invented movable metal type?", "printing"),
        ("How are U-shaped valleys carved?", "glaciers"),
    ]:
        (hit,) = retriever.retrieve(question)
        assert hit.node.get_content() == PASSAGES[name]


async def test_async_matches_sync(embed_model: Any) -> None:
    sync = embed_model.get_query_embedding("Where was the lighthouse?")
    assert await embed_model.aget_query_embedding("Where was the lighthouse?") == pytest.approx(
        sync
    )
    texts = ["One sentence.", "Another one."]
    batch = await embed_model.aget_text_embedding_batch(texts)
    np.testing.assert_allclose(batch, embed_model.get_text_embedding_batch(texts), atol=1e-5)


def test_non_text_is_rejected(embed_model: Any) -> None:
    with pytest.raises(TypeError, match="embed str only"):
        embed_model._get_text_embeddings(["fine", 3])
