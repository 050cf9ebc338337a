"""Thread-safety of the pipeline: token streams that hold no lock, shared tokenizers, async.

The model and both tokenizers are shared between threads and serialised by the
pipeline's lock. A generation must hold that lock from its prefill to its last token
(the prefix cache and the decoder's LoRA switch are shared state), but a *reader* of the
stream must not: a half-read stream would block every other caller, and a stream resumed
on another thread (as web servers do) could not release a lock taken on the first.

So a :class:`TokenStream` decodes in a worker thread that holds the lock for exactly
one generation, and hands the chunks over through a queue. At most ``max_new_tokens``
+ 1 chunks are ever queued (one per decoded token plus the final one), so the worker
never waits for its reader while holding the lock; closing or dropping the stream stops
the worker after its current token. :func:`aiter_in_thread` is the one bridge from such
blocking iterators to ``async for``, used by every async streaming method.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import queue
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .expansion import Source
from .generation import GenerationChunk, Usage

T = TypeVar("T")

_END = object()


class TokenStream(Iterator[GenerationChunk]):
    """The chunks of one generation, decoded under ``lock`` by a worker thread.

    Iterate it on any thread, at any pace, or stop early: the reader holds no lock.
    The worker starts on the first ``next()``, takes ``lock``, runs ``produce()`` to its
    end and releases the lock; :meth:`close` (or dropping the stream) makes it stop after
    the current token. Errors raised while decoding are raised to the reader.

    Args:
        produce: Returns the generation's chunks (called once, on the worker thread).
        lock: Held by the worker for the whole generation.
        usage: What the call costs, known before the first token (``output_tokens`` is
            0 until the last chunk, whose usage then replaces it).
        sources: The chunks shown as raw text (selective expansion), for citations.

    Example:
        >>> stream = pipeline.stream_prepared(corpus, sources, question, None, kwargs)  # doctest: +SKIP
        >>> stream.usage.input_positions  # before the first token  # doctest: +SKIP
        >>> first = next(stream)  # doctest: +SKIP
        >>> stream.close()  # the lock is free again after at most one more token  # doctest: +SKIP
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[GenerationChunk]],
        lock: AbstractContextManager[Any],
        usage: Usage,
        sources: Sequence[Source] = (),
    ) -> None:
        self.usage = usage
        self.sources = list(sources)
        self._produce: Callable[[], Iterator[GenerationChunk]] | None = produce
        self._lock = lock
        self._queue: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = False

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> GenerationChunk:
        if self._done:
            raise StopIteration
        if self._produce is not None:
            self._start()
        item, err = self._queue.get()
        if err is not None:
            self._done = True
            raise err
        if item is _END:
            self._done = True
            raise StopIteration
        if item.usage is not None:
            self.usage = item.usage
        return item  # type: ignore[no-any-return]

    def _start(self) -> None:
        args = (self._produce, self._lock, self._queue, self._stop)
        self._produce = None
        # The worker gets the queue and the stop event, never ``self``: a stream nobody
        # holds any more is collected, and its ``__del__`` stops the worker.
        worker = threading.Thread(target=_decode, args=args, name="e2llm-decode", daemon=True)
        worker.start()

    @property
    def started(self) -> bool:
        """Whether decoding has begun (on the first ``next()``)."""
        return self._produce is None

    def close(self) -> None:
        """Stop reading: the worker stops after its current token and releases the lock."""
        self._stop.set()
        self._done = True
        self._produce = None

    def __del__(self) -> None:
        self._stop.set()


def _decode(
    produce: Callable[[], Iterator[GenerationChunk]],
    lock: AbstractContextManager[Any],
    out: queue.SimpleQueue[tuple[Any, BaseException | None]],
    stop: threading.Event,
) -> None:
    """Worker of a :class:`TokenStream`: one generation under ``lock``, chunks into ``out``."""
    try:
        with lock:
            if stop.is_set():
                return
            chunks = produce()
            try:
                for chunk in chunks:
                    out.put((chunk, None))
                    if stop.is_set():
                        break
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:  # a generator's own cleanup, on this thread
                    close()
    except BaseException as err:  # handed to the reader, raised there
        out.put((None, err))
        return
    out.put((_END, None))


class LockedTokenizer:
    """A tokenizer shared between threads: every call takes the pipeline's lock.

    Hugging Face fast tokenizers keep mutable padding and truncation state, so two
    threads tokenizing at once (or one tokenizing while another encodes a padded batch)
    corrupt each other. This view calls and decodes like the tokenizer it wraps.

    Example:
        >>> ids = pipeline.tokenizer("Hello world", add_special_tokens=False)["input_ids"]  # doctest: +SKIP
        >>> pipeline.tokenizer.count(["Hello world", "Bye"])  # doctest: +SKIP
        [2, 1]
    """

    def __init__(self, tokenizer: Any, lock: AbstractContextManager[Any]) -> None:
        self._tokenizer = tokenizer
        self._lock = lock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        with self._lock:
            return str(self._tokenizer.decode(*args, **kwargs))

    def count(self, texts: Sequence[str], special_tokens: bool = False) -> list[int]:
        """Tokens of each text (without special tokens unless ``special_tokens``)."""
        if not texts:
            return []
        ids = self(list(texts), add_special_tokens=special_tokens)["input_ids"]
        return [len(row) for row in ids]


async def aiter_in_thread(factory: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """Build and drain ``factory()`` in a worker thread, yielding its items on the event loop.

    The event loop never blocks on the model. The worker reads ahead (a stream's items
    are few and small) and runs the iterator's own cleanup (``close()``) on its thread;
    errors are raised here. Leaving the ``async for`` early makes the worker stop after
    its current item. Context variables (tracing, callbacks) are copied into the worker.

    Example:
        >>> async for chunk in aiter_in_thread(lambda: pipeline.stream(docs, "Who?")):  # doctest: +SKIP
        ...     print(chunk.text, end="")
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def send(item: Any, err: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, (item, err))
        except RuntimeError:  # the loop closed: nobody is listening any more
            stop.set()

    def work() -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = factory()
            for item in iterator:
                if stop.is_set():
                    break
                send(item)
        except BaseException as err:  # re-raised on the event loop
            send(_END, err)
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        send(_END)

    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(work,), name="e2llm-async-stream", daemon=True
    )
    worker.start()
    try:
        while True:
            item, err = await items.get()
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()


@dataclass
class LastCall:
    """Usage and sources of a wrapper's most recently finished generation.

    For frameworks whose results drop them (LlamaIndex query engines return text only).

    Example:
        >>> last = LastCall()
        >>> text = "".join(c.text for c in last.track(pipeline.stream(docs, "Who?")))  # doctest: +SKIP
        >>> last.usage.n_chunks  # doctest: +SKIP
    """

    usage: Usage | None = None
    sources: list[Source] = field(default_factory=list)

    def track(self, chunks: Iterator[GenerationChunk]) -> Iterator[GenerationChunk]:
        """``chunks`` passed through; the final one's usage and sources are recorded."""
        for chunk in chunks:
            if chunk.usage is not None:
                self.usage = chunk.usage
                self.sources = list(chunk.sources)
            yield chunk


class ReportsLastCall:
    """``last_usage`` and ``last_sources`` of a wrapper that records its calls in ``_last``.

    The wrapper sets ``self._last`` to a :class:`LastCall` and passes its streams through
    ``self._last.track``.
    """

    _last: LastCall

    @property
    def last_usage(self) -> Usage | None:
        """Usage of the most recently finished call (soft tokens, compression ratio...)."""
        return self._last.usage

    @property
    def last_sources(self) -> list[Source]:
        """The chunks the most recently finished call showed as raw text (its citations)."""
        return list(self._last.sources)


def prime(iterator: Iterator[T]) -> Iterator[T]:
    """Run ``iterator`` up to its first item now, so that its errors raise at call time."""
    try:
        first = next(iterator)
    except StopIteration:
        return iter(())
    return itertools.chain([first], iterator)


async def aprime(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Await ``stream``'s first item now (raising its errors), then return the full stream.

    Example:
        >>> chunks = await aprime(aiter_in_thread(lambda: pipeline.stream(docs, "Who?")))  # doctest: +SKIP
    """
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
