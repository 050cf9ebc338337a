"""The sealed runtime: streams hold no lock while read, one async bridge, no reaching in.

Integrations, eval and the CLI talk only to ``E2LLMPipeline``; a stream decodes under the
pipeline's lock in a worker thread, so a half-read, abandoned or migrated stream never
keeps other callers out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from e2llm_integrations.core import E2LLMPipeline, EncodedCorpus, GenerationConfig
from e2llm_integrations.core.runtime import aiter_in_thread

PACKAGE = Path(__file__).resolve().parents[2] / "e2llm_integrations"
DOCS = [
    "The harbour bridge was designed by Ada Lindqvist in 1931. It opened two years later. "
    "Ferries still cross below it every hour, and the old toll house is now a museum.",
    "Copper mining shaped the valley. The last mine closed in 1978 after a long strike.",
]
QUESTION = "Who designed the bridge?"
GEN = GenerationConfig(max_new_tokens=16)
SLOW = GenerationConfig(max_new_tokens=200)
CHAT = [{"role": "user", "content": "Count to a thousand."}]
WAIT_S = 60  # generous: the test machine may be busy; a held lock would wait forever


@pytest.fixture(scope="module")
def corpus(tiny_pipeline: E2LLMPipeline) -> EncodedCorpus:
    return tiny_pipeline.encode(DOCS)


@pytest.fixture(scope="module")
def reference(tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus) -> list[str]:
    """The greedy answer's chunks, read in one go on this thread."""
    pieces = [p.text for p in tiny_pipeline.stream(corpus, QUESTION, GEN)]
    assert len(pieces) > 2, "the tiny model must stream several chunks for these tests"
    return pieces


def _lock_is_free(pipe: E2LLMPipeline, timeout: float = WAIT_S) -> bool:
    """Whether another thread can take the pipeline's lock within ``timeout`` seconds."""
    got: list[bool] = []

    def take() -> None:
        if pipe.lock.acquire(timeout=timeout):
            pipe.lock.release()
            got.append(True)

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(timeout + 5)
    return got == [True]


def _decoder_calls(pipe: E2LLMPipeline) -> tuple[list[int], Any]:
    calls: list[int] = []
    hook = pipe.model.decoder.get_base_model().model.register_forward_hook(
        lambda *a: calls.append(1)
    )
    return calls, hook


# ---------------------------------------------------------------------- layering
SEALED = [
    re.compile(r"\.model\.|pipeline\.model|\.lock\b"),
    re.compile(r"\b(pipe|pipeline)\.(model|lock|chunker|prefix_cache)\b"),
]


def test_nothing_outside_core_reaches_into_the_pipeline() -> None:
    hits = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "core" not in path.relative_to(PACKAGE).parts[:1]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(rule.search(line) for rule in SEALED)
    ]
    assert len(list(PACKAGE.rglob("*.py"))) > 30  # the walk found the package
    assert hits == [], "use E2LLMPipeline's public methods instead:\n" + "\n".join(hits)


def test_the_grep_rules_catch_a_reach_in() -> None:
    for line in ("pipe.model.tokenizer(x)", "with pipeline.lock:", "model = pipeline.model"):
        assert any(rule.search(line) for rule in SEALED), line
    assert not any(rule.search("pipe.tokenizer.count([x])") for rule in SEALED)


# ---------------------------------------------------------------------- streams
def test_streamed_greedy_output_matches_ask(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus, reference: list[str]
) -> None:
    result = tiny_pipeline.ask(corpus, QUESTION, GEN)
    assert "".join(reference) == result.text


def test_usage_is_known_before_the_first_token(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus
) -> None:
    prepared, sources, kwargs = tiny_pipeline.prepare(corpus, QUESTION, GEN, expand_top_k=1)
    stream = tiny_pipeline.stream_prepared(prepared, sources, QUESTION, GEN, kwargs)
    before = stream.usage.to_dict()
    assert not stream.started and stream.sources == sources and len(sources) == 1
    last = list(stream)[-1]
    assert last.usage is not None and stream.usage is last.usage
    after = last.usage.to_dict()
    assert before["output_tokens"] == 0 and after["output_tokens"] > 0
    for key in ("input_positions", "soft_tokens", "n_chunks", "context_tokens", "expanded_chunks"):
        assert before[key] == after[key], key
    assert before["input_positions"] == tiny_pipeline.input_positions(prepared, QUESTION, **kwargs)


def test_a_half_read_stream_does_not_block_another_caller(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus, reference: list[str]
) -> None:
    stream = tiny_pipeline.stream(corpus, QUESTION, GEN)
    with contextlib.closing(stream):
        assert next(stream).text == reference[0]  # then the reader stops, mid-answer
        answers: list[str] = []
        other = threading.Thread(
            target=lambda: answers.append(tiny_pipeline.ask(corpus, QUESTION, GEN).text),
            daemon=True,
        )
        other.start()
        other.join(WAIT_S)
        assert answers == ["".join(reference)], "a suspended stream blocked another caller"
        assert [p.text for p in stream] == reference[1:]  # and the first stream still finishes


def test_a_stream_resumed_on_another_thread_completes_and_releases_the_lock(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus, reference: list[str]
) -> None:
    stream = tiny_pipeline.stream(corpus, QUESTION, GEN)
    first = next(stream).text  # started here ...
    rest: list[str] = []
    errors: list[BaseException] = []

    def finish() -> None:  # ... and finished elsewhere, as a web server's worker pool does
        try:
            rest.extend(p.text for p in stream)
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=finish, daemon=True)
    worker.start()
    worker.join(WAIT_S)
    assert errors == [] and [first, *rest] == reference
    assert _lock_is_free(tiny_pipeline, timeout=10)


@pytest.mark.parametrize("how", ["close", "drop"])
def test_abandoning_a_stream_stops_decoding_and_releases_the_lock(
    tiny_pipeline: E2LLMPipeline, how: str
) -> None:
    full = list(tiny_pipeline.stream_text(CHAT, SLOW))
    assert full[-1].finish_reason == "length"  # so a complete run takes all 200 steps
    calls, hook = _decoder_calls(tiny_pipeline)
    try:
        stream = tiny_pipeline.stream_text(CHAT, SLOW)
        next(stream)
        if how == "close":
            stream.close()
        else:
            del stream  # garbage: no reference left
        assert _lock_is_free(tiny_pipeline)
        steps = len(calls)
        time.sleep(0.2)
        assert len(calls) == steps, "the worker kept decoding after releasing the lock"
    finally:
        hook.remove()
    assert steps < SLOW.max_new_tokens // 2, f"decoded {steps} steps for an abandoned stream"


def test_an_abandoned_pipeline_stream_generator_releases_the_lock(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus
) -> None:
    stream = tiny_pipeline.stream(corpus, QUESTION, GEN)
    next(stream)
    # Closed on another thread than the one it started on.
    closer = threading.Thread(target=stream.close, daemon=True)
    closer.start()
    closer.join(WAIT_S)
    assert _lock_is_free(tiny_pipeline, timeout=10)


def test_decoding_errors_reach_the_reader(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus
) -> None:
    too_long = GenerationConfig(max_new_tokens=tiny_pipeline.max_positions)
    stream = tiny_pipeline.stream_prepared(corpus, [], QUESTION, too_long, {})
    with pytest.raises(ValueError, match="decoder's window"):
        next(stream)
    assert list(stream) == []
    assert _lock_is_free(tiny_pipeline, timeout=10)


def test_plain_text_prompt_over_the_window_is_refused_up_front(
    tiny_pipeline: E2LLMPipeline,
) -> None:
    huge = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(ValueError, match="decoder window"):
        tiny_pipeline.stream_text(huge, GEN)  # before any next()


# ---------------------------------------------------------------------- the async bridge
async def test_the_async_bridge_keeps_order_and_raises_errors() -> None:
    def numbers() -> Iterator[int]:
        yield from range(5)
        raise KeyError("boom")

    seen: list[int] = []
    with pytest.raises(KeyError, match="boom"):
        async for n in aiter_in_thread(numbers):
            seen.append(n)
    assert seen == [0, 1, 2, 3, 4]


async def test_leaving_the_async_bridge_early_stops_and_closes_the_iterator() -> None:
    closed = threading.Event()
    made: list[int] = []

    def slow() -> Iterator[int]:
        try:
            for i in range(1000):
                time.sleep(0.005)
                made.append(i)
                yield i
        finally:
            closed.set()

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not closed.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    async with contextlib.aclosing(aiter_in_thread(slow)) as items:
        async for i in items:
            if i == 3:
                break
    assert await asyncio.to_thread(closed.wait, 10), "the iterator was not closed"
    await task
    assert len(made) < 100 and ticks > 3  # stopped early; the loop ran meanwhile


async def test_an_async_stream_left_early_releases_the_lock(
    tiny_pipeline: E2LLMPipeline, corpus: EncodedCorpus
) -> None:
    async def first_chunk_only() -> None:
        factory = lambda: tiny_pipeline.stream(corpus, QUESTION, GEN)  # noqa: E731
        async with contextlib.aclosing(aiter_in_thread(factory)) as chunks:
            async for _ in chunks:
                break

    await asyncio.wait_for(first_chunk_only(), WAIT_S)
    assert await asyncio.to_thread(_lock_is_free, tiny_pipeline, 10)


# ---------------------------------------------------------------------- encoding helpers
def test_encode_texts_keeps_each_text_to_its_own_chunks(tiny_pipeline: E2LLMPipeline) -> None:
    parts = tiny_pipeline.encode_texts([DOCS[0], "   ", DOCS[1]])
    assert [len(p) > 0 for p in parts] == [True, False, True]
    assert {c.doc_id for c in parts[0].chunks} == {"0"}
    assert {c.doc_id for c in parts[2].chunks} == {"2"}
    whole = tiny_pipeline.encode([DOCS[0]])
    torch.testing.assert_close(parts[0].features, whole.features)
    empty = tiny_pipeline.empty_corpus()
    assert len(empty) == 0 and empty.mask.dtype == whole.mask.dtype
    assert len(EncodedCorpus.concat([empty, whole])) == len(whole)


def test_locked_tokenizer_counts_as_the_tokenizer_does(tiny_pipeline: E2LLMPipeline) -> None:
    tok = tiny_pipeline.model.tokenizer
    texts = ["Hello world", "A longer sentence about bridges."]
    want = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert tiny_pipeline.tokenizer.count(texts) == want
    ids = tiny_pipeline.tokenizer(texts[1], add_special_tokens=False)["input_ids"]
    assert tiny_pipeline.tokenizer.decode(ids) == tok.decode(ids)
    assert tiny_pipeline.chat_ids(CHAT) == tiny_pipeline.model.chat_ids(CHAT)
