"""``EncodedCorpus``: chunks with their encoder features, reusable across questions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checkpoint import atomic_save_tensors, atomic_write_bytes
from .chunking import Chunk

CORPUS_FORMAT_VERSION = 1
CORPUS_META = "corpus.json"
CORPUS_TENSORS = "features.safetensors"


@dataclass
class EncodedCorpus:
    """Encoded chunks of a document set.

    Attributes:
        chunks: The chunks, in document order.
        features: (n_chunks, L, d_enc) encoder features.
        mask: (n_chunks, L) feature mask.
        context_tokens: Decoder tokens each chunk's raw text takes.
        fingerprint: Encoder + chunking settings the features were made with; a corpus is
            only usable by a model with the same fingerprint.

    Example:
        >>> corpus = pipeline.encode(["a long report ..."])  # doctest: +SKIP
        >>> pipeline.ask(corpus, "What is the main finding?")  # doctest: +SKIP
    """

    chunks: list[Chunk]
    features: torch.Tensor
    mask: torch.Tensor
    context_tokens: list[int]
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.chunks)
        if self.features.shape[0] != n or self.mask.shape[0] != n or len(self.context_tokens) != n:
            raise ValueError(
                f"EncodedCorpus parts disagree: {n} chunks, {self.features.shape[0]} feature rows, "
                f"{self.mask.shape[0]} mask rows, {len(self.context_tokens)} token counts."
            )

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def total_context_tokens(self) -> int:
        return sum(self.context_tokens)

    def select(self, indices: Sequence[int]) -> EncodedCorpus:
        """A corpus of the chunks at ``indices`` (in the order given)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return EncodedCorpus(
            [self.chunks[i] for i in idx.tolist()],
            self.features[idx],
            self.mask[idx],
            [self.context_tokens[i] for i in idx.tolist()],
            dict(self.fingerprint),
        )

    @classmethod
    def concat(cls, parts: Sequence[EncodedCorpus]) -> EncodedCorpus:
        """Join corpora made with the same fingerprint."""
        if not parts:
            raise ValueError("concat needs at least one corpus.")
        if any(p.fingerprint != parts[0].fingerprint for p in parts):
            raise ValueError("Cannot join corpora encoded with different encoder/chunk settings.")
        length = max(p.features.shape[1] for p in parts)
        feats = [
            torch.nn.functional.pad(p.features, (0, 0, 0, length - p.features.shape[1]))
            for p in parts
        ]
        masks = [torch.nn.functional.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts]
        return cls(
            [c for p in parts for c in p.chunks],
            torch.cat(feats),
            torch.cat(masks),
            [t for p in parts for t in p.context_tokens],
            dict(parts[0].fingerprint),
        )

    def save(self, path: str | Path) -> Path:
        """Write the corpus to folder ``path`` (safetensors + JSON, atomically)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors({"features": self.features, "mask": self.mask}, out / CORPUS_TENSORS)
        meta = {
            "format_version": CORPUS_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "chunks": [c.to_dict() for c in self.chunks],
            "context_tokens": self.context_tokens,
        }
        atomic_write_bytes(out / CORPUS_META, json.dumps(meta).encode())
        return out

    @classmethod
    def load(cls, path: str | Path) -> EncodedCorpus:
        root = Path(path)
        try:
            meta = json.loads((root / CORPUS_META).read_text())
            tensors = load_file(str(root / CORPUS_TENSORS))
        except FileNotFoundError as err:
            raise ValueError(
                f"{root} is not a saved EncodedCorpus ({err.filename} missing)."
            ) from err
        except (json.JSONDecodeError, SafetensorError, UnicodeDecodeError) as err:
            raise ValueError(f"Encoded corpus at {root} is corrupt ({err}); re-encode it.") from err
        if meta.get("format_version") != CORPUS_FORMAT_VERSION:
            raise ValueError(
                f"Encoded corpus at {root} has format {meta.get('format_version')!r}; "
                f"expected {CORPUS_FORMAT_VERSION}. Re-encode the documents."
            )
        return cls(
            [Chunk(**c) for c in meta["chunks"]],
            tensors["features"],
            tensors["mask"],
            list(meta["context_tokens"]),
            meta["fingerprint"],
        )
