"""KV prefix cache: a second question over the same documents prefills only the question.

The prompt is ``[prefix] <soft tokens> [suffix]``: the prefix holds the system message,
the chat history and the instruction, the suffix the excerpts and the question. The
decoder's keys and values over ``[prefix] <soft tokens>`` depend only on those, so they
are kept, keyed by a digest of the prefix token ids and of the soft tokens themselves
(which fixes the corpus, the adapter and the chunk order), in an LRU bounded by bytes.
Each call works on a copy, so the kept entry is never changed by decoding.

Example:
    >>> cache = PrefixCache(max_bytes=256 * 2**20)
    >>> cache.stats()["entries"]
    0
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .generation import cache_of, last_logits_only
from .precision import inference_autocast

DEFAULT_PREFIX_CACHE_BYTES = 512 * 2**20
"""Default bound of a pipeline's prefix cache (about 50 corpora of 8k tokens on SmolLM2)."""


@dataclass
class _Entry:
    cache: Any
    length: int
    nbytes: int


def cache_nbytes(cache: Any) -> int:
    """Bytes held by the keys and values of a transformers cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def prefix_key(prefix_ids: Sequence[int], soft: torch.Tensor) -> str:
    """Digest of the prefix tokens and the soft tokens (dtype and shape included)."""
    digest = hashlib.sha256()
    digest.update(torch.tensor(list(prefix_ids), dtype=torch.int64).numpy().tobytes())
    flat = soft.detach().to("cpu", torch.float32).contiguous()
    digest.update(str(tuple(soft.shape)).encode() + str(soft.dtype).encode())
    digest.update(flat.numpy().tobytes())
    return digest.hexdigest()


class PrefixCache:
    """LRU of decoder KV caches over ``[prefix] <soft tokens>``, bounded by bytes.

    Args:
        max_bytes: Upper bound on the keys and values kept; the least recently used
            entries are dropped first. An entry larger than the bound is not kept.

    Thread-safe: lookups and insertions take an internal lock; the prefill itself runs
    outside it (callers serialise model use).
    """

    def __init__(self, max_bytes: int = DEFAULT_PREFIX_CACHE_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0 (0 disables), got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": sum(e.nbytes for e in self._entries.values()),
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, decoder: Any, prefix_embeds: torch.Tensor, key: str) -> tuple[Any, int]:
        """A private copy of the KV cache over ``prefix_embeds`` (1, P, d), and P.

        Prefills and keeps it on a miss.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return copy_cache(entry.cache), entry.length
            self.misses += 1
        with torch.inference_mode(), inference_autocast(decoder):
            out = decoder(inputs_embeds=prefix_embeds, use_cache=True, **last_logits_only(decoder))
        kv = cache_of(out)
        entry = _Entry(kv, int(prefix_embeds.shape[1]), cache_nbytes(kv))
        self._put(key, entry)
        return copy_cache(kv), entry.length

    def _put(self, key: str, entry: _Entry) -> None:
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while sum(e.nbytes for e in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)


def copy_cache(cache: Any) -> Any:
    """A deep copy of a decoder KV cache whose tensors are cloned directly.

    The same result as ``copy.deepcopy``; a ``transformers`` cache's layer tensors are
    cloned up front (each tensor's own ``__deepcopy__`` is most of deepcopy's time, which
    a repeat question waits for).
    """
    memo: dict[int, Any] = {}
    for layer in getattr(cache, "layers", ()):
        for value in vars(layer).values():
            if isinstance(value, torch.Tensor):
                memo[id(value)] = value.clone()
    return copy.deepcopy(cache, memo)
