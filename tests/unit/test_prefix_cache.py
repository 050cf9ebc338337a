"""KV prefix cache: identical greedy output, hits, byte-bounded LRU eviction, concurrency."""

from __future__ import annotations

import threading

import pytest
import torch

from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.prefix_cache import PrefixCache, cache_nbytes, copy_cache, prefix_key

DOCS = [
    "The harbour bridge was designed by Ada Lindqvist in 1931. It opened two years later. "
    "Ferries still cross below it every hour, and the old toll house is now a museum.",
    "Copper mining shaped the valley. The last mine closed in 1978 after a long strike, "
    "and the town turned to tourism, orchards and a small university.",
]
QUESTIONS = [
    "Who designed the bridge?",
    "When did the last mine close?",
    "What is the toll house now?",
]


@pytest.fixture(scope="module")
def corpus(tiny_pipeline: E2LLMPipeline):  # type: ignore[no-untyped-def]
    return tiny_pipeline.encode(DOCS)


def _answer(pipe: E2LLMPipeline, corpus, question: str, cache: PrefixCache | None, **kw):  # type: ignore[no-untyped-def]
    gen = GenerationConfig(max_new_tokens=12)
    excerpts = [c.text for c in corpus.chunks[:1]]
    return pipe.model.generate(
        corpus.features, corpus.mask, question, gen, excerpts=excerpts, prefix_cache=cache, **kw
    )


def test_greedy_output_is_identical_with_and_without_the_cache(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    cache = PrefixCache()
    for q in QUESTIONS:
        plain = _answer(tiny_pipeline, corpus, q, None)
        cached = _answer(tiny_pipeline, corpus, q, cache)
        assert cached.text == plain.text and cached.text  # the tiny model emits something
        assert cached.usage.input_positions == plain.usage.input_positions
    stats = cache.stats()
    assert stats["entries"] == 1 and stats["misses"] == 1 and stats["hits"] == len(QUESTIONS) - 1
    assert stats["bytes"] > 0


def test_the_kept_entry_is_not_changed_by_decoding(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    cache = PrefixCache()
    _answer(tiny_pipeline, corpus, QUESTIONS[0], cache)
    before = cache.nbytes
    for _ in range(3):
        _answer(tiny_pipeline, corpus, QUESTIONS[1], cache)
    assert cache.nbytes == before  # decoding grew private copies only


def test_a_different_prefix_or_corpus_is_a_different_entry(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    cache = PrefixCache()
    _answer(tiny_pipeline, corpus, QUESTIONS[0], cache)
    _answer(tiny_pipeline, corpus, QUESTIONS[0], cache, system="Answer tersely.")
    other = tiny_pipeline.encode(DOCS[:1])
    _answer(tiny_pipeline, other, QUESTIONS[0], cache)
    assert cache.stats()["entries"] == 3 and cache.stats()["hits"] == 0
    soft = torch.ones(2, 4)
    assert prefix_key([1, 2], soft) != prefix_key([1, 3], soft)
    assert prefix_key([1, 2], soft) != prefix_key([1, 2], soft * 2)


def test_lru_eviction_keeps_the_byte_bound(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    probe = PrefixCache()
    _answer(tiny_pipeline, corpus, QUESTIONS[0], probe, system="Z.")  # same size as A., B., C.
    one = probe.nbytes
    cache = PrefixCache(max_bytes=int(one * 2.5))  # room for two entries of this size
    systems = ["A.", "B.", "C."]
    for s in systems:
        _answer(tiny_pipeline, corpus, QUESTIONS[0], cache, system=s)
    assert cache.stats()["entries"] == 2 and cache.nbytes <= cache.max_bytes
    _answer(tiny_pipeline, corpus, QUESTIONS[0], cache, system="A.")  # evicted: a miss again
    assert cache.stats()["misses"] == 4
    tiny = PrefixCache(max_bytes=one - 1)  # an entry larger than the bound is not kept
    _answer(tiny_pipeline, corpus, QUESTIONS[0], tiny, system="Z.")
    assert tiny.stats()["entries"] == 0
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixCache(max_bytes=-1)


def test_concurrent_calls_agree_with_serial_ones(tiny_pipeline, corpus) -> None:  # type: ignore[no-untyped-def]
    expected = {q: _answer(tiny_pipeline, corpus, q, None).text for q in QUESTIONS}
    cache, lock, got, errors = PrefixCache(), threading.Lock(), {}, []

    def worker(q: str) -> None:
        try:
            with lock:  # the pipeline serialises model use the same way
                got[q] = _answer(tiny_pipeline, corpus, q, cache).text
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(q,)) for q in QUESTIONS * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected
    assert cache.stats()["entries"] == 1 and cache.stats()["hits"] == 2 * len(QUESTIONS) - 1


def test_cache_nbytes_counts_keys_and_values() -> None:
    class Layer:
        keys = torch.zeros(1, 2, 3, 4)
        values = torch.zeros(1, 2, 3, 4)

    class Cache:
        layers = [Layer(), Layer()]

    assert cache_nbytes(Cache()) == 2 * 2 * 24 * 4


def test_pipeline_and_chat_model_reuse_the_prefix_for_repeat_questions(tiny_model_dirs) -> None:  # type: ignore[no-untyped-def]
    import warnings

    from langchain_core.messages import HumanMessage

    from e2llm_integrations.langchain import E2LLMChat

    from ..conftest import tiny_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        pipe = E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs), device="cpu")
        torch.manual_seed(0)
        off = E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs), device="cpu")
    off.prefix_cache = PrefixCache(max_bytes=0)  # disabled: every call prefills everything
    gen = GenerationConfig(max_new_tokens=10)
    corpus = pipe.encode(DOCS)
    for q in QUESTIONS:
        with_cache = pipe.ask(corpus, q, gen, expand_top_k=1)
        assert with_cache.text == off.ask(corpus, q, gen, expand_top_k=1).text
    assert pipe.prefix_cache.stats()["hits"] == len(QUESTIONS) - 1
    assert off.prefix_cache.stats()["entries"] == 0
    # Through LangChain: the same documents in two calls share one prefix entry.
    chat = E2LLMChat(pipeline=pipe, max_tokens=6, expand_top_k=1)
    blocks = [{"type": "text-plain", "mime_type": "text/plain", "text": d} for d in DOCS]
    pipe.prefix_cache.clear()
    hits = pipe.prefix_cache.stats()["hits"]
    replies = [
        chat.invoke([HumanMessage(content=[*blocks, {"type": "text", "text": q}])]).text
        for q in QUESTIONS[:2]
    ]
    assert pipe.prefix_cache.stats()["hits"] == hits + 1 and all(
        isinstance(r, str) for r in replies
    )


def test_copy_cache_is_a_deep_copy(tiny_pipeline: E2LLMPipeline) -> None:
    decoder = tiny_pipeline.model.decoder
    with torch.inference_mode():
        kv = decoder(input_ids=torch.arange(3, 12).unsqueeze(0), use_cache=True).past_key_values
        copied = copy_cache(kv)
    pairs = [
        (a, b)
        for la, lb in zip(kv.layers, copied.layers, strict=True)
        for a, b in ((la.keys, lb.keys), (la.values, lb.values))
    ]
    assert pairs and type(copied) is type(kv) and copied is not kv
    for a, b in pairs:
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with torch.inference_mode():  # decoding on the copy leaves the original as it was
        decoder(input_ids=torch.tensor([[5]]), past_key_values=copied, use_cache=True)
    assert copied.get_seq_length() == kv.get_seq_length() + 1 == 10
