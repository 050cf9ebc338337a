"""``CorpusCache``: the one LRU behind the LangChain store and the LlamaIndex node cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from e2llm_integrations.core import Chunk, E2LLMPipeline, EncodedCorpus
from e2llm_integrations.core.corpus_cache import CorpusCache, content_key, corpus_nbytes
from e2llm_integrations.langchain import CORPUS_STORE, CorpusStore
from e2llm_integrations.llama_index import NodeCorpusCache

FINGERPRINT = {"encoder": "tiny"}


def corpus(name: str, n: int = 2, fingerprint: dict[str, Any] | None = None) -> EncodedCorpus:
    chunks = [Chunk(f"{name} {i}", name, 0, 1, i, 2) for i in range(n)]
    features = torch.full((n, 1, 4), float(len(name)))
    mask = torch.ones(n, 1, dtype=torch.long)
    return EncodedCorpus(chunks, features, mask, [2] * n, dict(fingerprint or FINGERPRINT))


def test_least_recently_used_entries_go_first_when_bytes_run_out() -> None:
    size = corpus_nbytes(corpus("a"))
    cache = CorpusCache(max_bytes=int(2.5 * size))
    a, b = cache.put(corpus("a")), cache.put(corpus("b"))
    assert cache.get(a) is not None  # a is now the most recently used
    c = cache.put(corpus("c"))
    assert cache.get(b) is None, "b was the least recently used"
    assert cache.get(a) is not None and cache.get(c) is not None
    assert len(cache) == 2 and cache.nbytes == 2 * size <= cache.max_bytes  # type: ignore[operator]
    big = cache.put(corpus("huge", n=10))  # larger than the bound: kept alone
    assert len(cache) == 1 and cache.get(big) is not None
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.hits == cache.misses == 0


def test_count_bound_replacing_a_key_and_fingerprints() -> None:
    cache = CorpusCache(max_bytes=None, max_items=2)
    for name in "abc":
        cache.put(corpus(name), key=name)
    assert [cache.get(k) is not None for k in "abc"] == [False, True, True]
    cache.put(corpus("b", n=3), key="b")  # a new value under an old key
    assert len(cache) == 2 and len(cache.get("b")) == 3  # type: ignore[arg-type]
    assert cache.nbytes == corpus_nbytes(corpus("b", n=3)) + corpus_nbytes(corpus("c"))
    assert cache.get("c", fingerprint=FINGERPRINT) is not None
    assert cache.get("c", fingerprint={"encoder": "other"}) is None  # made with other settings
    assert cache.get(None) is None
    gpu_free = cache.get("c")
    assert gpu_free is not None and gpu_free.features.device.type == "cpu"
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        CorpusCache(max_items=0)


def test_the_wrappers_caches_are_core_caches(tiny_pipeline: E2LLMPipeline) -> None:
    assert isinstance(CORPUS_STORE, CorpusCache) and isinstance(CorpusStore(2**20), CorpusCache)
    assert isinstance(NodeCorpusCache(tiny_pipeline), CorpusCache)
    with pytest.raises(ValueError, match="max_bytes must be >= 1"):
        CorpusStore(max_bytes=0)


class EncodeTextsSpy:
    def __init__(self, pipeline: E2LLMPipeline) -> None:
        self.real = pipeline.encode_texts
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> list[EncodedCorpus]:
        self.calls.append(list(texts))
        return self.real(texts)


def test_encode_by_content_encodes_each_new_text_once_and_evicts(
    tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = EncodeTextsSpy(tiny_pipeline)
    monkeypatch.setattr(tiny_pipeline, "encode_texts", spy)
    cache = CorpusCache(max_bytes=None, max_items=2)
    one, two, three = "The tide rose at dawn.", "Bees dance to point at flowers.", "Ice flows."
    first = cache.encode(tiny_pipeline, [one, two, one], ids=["x", "y", "z"])
    assert spy.calls == [[one, two]]  # the repeated text once, both new ones in one pass
    assert [c.chunks[0].doc_id for c in first] == ["x", "y", "z"]  # cited as asked
    assert cache.get(content_key(one)) is not None
    again = cache.encode(tiny_pipeline, [two, one])
    assert len(spy.calls) == 1 and [c.chunks[0].text for c in again] == [two, one]
    cache.encode(tiny_pipeline, [three])  # evicts the least recently used: ``two``
    cache.encode(tiny_pipeline, [one, two])
    assert spy.calls[-1] == [two]
    with pytest.raises(ValueError, match="no words"):
        cache.encode(tiny_pipeline, [" \n "])
