"""Helpers shared by the LlamaIndex wrappers: prompt splitting, streams, expansion.

How a plain prompt is split into context (read as compressed chunks) and question
(read as text) is documented on :func:`split_prompt`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..core.corpus import EncodedCorpus
from ..core.expansion import Source
from ..core.generation import GenerationChunk, GenerationConfig
from ..core.pipeline import E2LLMPipeline

T = TypeVar("T")

_FENCED = re.compile(r"^(?P<head>.*?)\n-{3,}\n(?P<context>.*)\n-{3,}\n(?P<tail>.*)$", re.DOTALL)
_QUERY = re.compile(r"(?:^|\n)Query:\s*(?P<query>.*?)\s*(?:\nAnswer:.*)?$", re.DOTALL)
_REFINE = re.compile(
    r"The original query is as follows:\s*(?P<query>.*?)\n"
    r"We have provided an existing answer:\s*(?P<answer>.*?)\n",
    re.DOTALL,
)


@dataclass(frozen=True)
class SplitPrompt:
    """A prompt cut into the context E2LLM compresses and the question it reads as text."""

    context: str
    question: str


def split_prompt(prompt: str) -> SplitPrompt:
    """Split a plain prompt into context and question.

    The rule, in order:

    1. **Fenced context** (LlamaIndex's QA, tree-summarize and refine templates, and any
       prompt shaped like them): the text between the first and the last line of three or
       more dashes is the context. The question is the text after ``Query:`` in the part
       after the fence (without a trailing ``Answer:`` label); for the refine template it
       is the original query plus the existing answer; otherwise the whole part after the
       fence.
    2. **Paragraphs**: the last paragraph (after the last blank line) is the question and
       everything before it is the context.
    3. **One paragraph**: the whole prompt is the question; there is no context.

    Example:
        >>> split_prompt("Alice was born in Paris.\\n\\nWhere was Alice born?")
        SplitPrompt(context='Alice was born in Paris.', question='Where was Alice born?')
    """
    fenced = _FENCED.match(prompt)
    if fenced is not None:
        return SplitPrompt(fenced["context"].strip(), _fenced_question(fenced))
    head, sep, last = prompt.strip().rpartition("\n\n")
    if sep and head.strip() and last.strip():
        return SplitPrompt(head.strip(), last.strip())
    return SplitPrompt("", prompt.strip())


def _fenced_question(match: re.Match[str]) -> str:
    refine = _REFINE.search(match["head"])
    if refine is not None:
        return (
            f"{refine['query'].strip()}\n(An earlier answer was: {refine['answer'].strip()} "
            "Improve it only if the context helps.)"
        )
    query = _QUERY.search(match["tail"])
    if query is not None and query["query"].strip():
        return query["query"].strip()
    return match["tail"].strip() or match["head"].strip()


# ---------------------------------------------------------------------- streams
_END = object()


def prime(iterator: Iterator[T]) -> Iterator[T]:
    """Run ``iterator`` up to its first item now, so that its errors raise at call time."""
    try:
        first = next(iterator)
    except StopIteration:
        return iter(())
    return itertools.chain([first], iterator)


async def aiter_in_thread(factory: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Build and drain ``factory()`` in one worker thread, yielding items on the event loop.

    One thread runs the whole iteration, so locks the iterator holds (the pipeline's
    ``RLock``) are acquired and released by the same thread, and the event loop never
    blocks on the model. Stopping early asks the worker to stop after its current item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def send(item: Any, err: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, err))
        except RuntimeError:  # the loop closed: nobody is listening any more
            stop.set()

    def work() -> None:
        try:
            for item in factory():
                send(item)
                if stop.is_set():
                    break
        except BaseException as err:  # re-raised in the consumer
            send(_END, err)
            return
        send(_END)

    threading.Thread(target=work, name="e2llm-llama-index-stream", daemon=True).start()
    try:
        while True:
            item, err = await queue.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()


async def aprime(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Await ``stream``'s first item now (raising its errors), then return the full stream."""
    try:
        first = [await stream.__anext__()]
    except StopAsyncIteration:
        first = []

    async def rest() -> AsyncIterator[T]:
        for item in first:
            yield item
        async for item in stream:
            yield item

    return rest()


# ---------------------------------------------------------------------- expansion
def cited_as(corpus: EncodedCorpus, doc_id: str) -> EncodedCorpus:
    """``corpus`` with every chunk's ``doc_id`` set to ``doc_id`` (tensors shared, not copied)."""
    chunks = [c if c.doc_id == doc_id else replace(c, doc_id=doc_id) for c in corpus.chunks]
    return EncodedCorpus(
        chunks, corpus.features, corpus.mask, list(corpus.context_tokens), corpus.fingerprint
    )


def expanded_stream(
    pipeline: E2LLMPipeline,
    corpus: EncodedCorpus,
    question: str,
    generation: GenerationConfig | None,
    expand_top_k: int | None,
    **prompt: Any,
) -> tuple[Iterator[GenerationChunk], list[Source]]:
    """Pick the expanded chunks now, then stream the answer over them.

    The same choice as ``pipeline.stream(corpus, question, generation, expand_top_k,
    **prompt)``, made before the first token, so the sources are known before the answer
    (a streaming response can carry them). The last chunk carries them too, with
    ``usage.expanded_chunks``, as the pipeline's own stream does.

    Returns:
        The token stream and the expanded chunks (document order).
    """
    corpus, sources, kwargs = pipeline.prepare(corpus, question, generation, expand_top_k, **prompt)
    return pipeline.stream_prepared(corpus, sources, question, generation, kwargs), sources
