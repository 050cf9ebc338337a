"""``EncodedCorpus``: chunks with their encoder features, reusable across questions.

A saved corpus is a folder of ``features.safetensors`` and ``corpus.json``; the JSON
records the sha256 of the tensors file and of its own content, and the fingerprint of
the encoder/chunk settings is required. Loading refuses anything corrupt, incomplete or
malformed with a ``ValueError`` that says to re-encode.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checkpoint import sha256
from .chunking import Chunk
from .io import save_tensors, write_bytes
from .options import OnOverflow, check_on_overflow  # noqa: F401  (public here too)

if TYPE_CHECKING:
    from .model import E2LLMModel


CORPUS_FORMAT_VERSION = 2
"""2: checksums of the tensors and of the metadata, required fingerprint."""
CORPUS_META = "corpus.json"
CORPUS_TENSORS = "features.safetensors"
_META_KEYS = {"format_version", "fingerprint", "chunks", "context_tokens", "files", "meta_sha256"}
_CHUNK_KEYS = {"text", "doc_id", "start", "end", "index", "n_tokens"}


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
        dropped_chunks: Chunks of the source documents left out because they did not fit
            the decoder's window (0 for a complete corpus).

    Example:
        >>> corpus = pipeline.encode(["a long report ..."])  # doctest: +SKIP
        >>> pipeline.ask(corpus, "What is the main finding?")  # doctest: +SKIP
    """

    chunks: list[Chunk]
    features: torch.Tensor
    mask: torch.Tensor
    context_tokens: list[int]
    fingerprint: dict[str, Any] = field(default_factory=dict)
    dropped_chunks: int = 0

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

    def cited_as(self, doc_id: str) -> EncodedCorpus:
        """This corpus with every chunk's ``doc_id`` set to ``doc_id`` (tensors shared).

        Wrappers use it so that a chunk's :class:`~.expansion.Source` names the framework
        document or node it came from.
        """
        chunks = [c if c.doc_id == doc_id else replace(c, doc_id=doc_id) for c in self.chunks]
        return EncodedCorpus(
            chunks,
            self.features,
            self.mask,
            list(self.context_tokens),
            self.fingerprint,
            self.dropped_chunks,
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
            sum(p.dropped_chunks for p in parts),
        )

    def save(self, path: str | Path) -> Path:
        """Write the corpus to folder ``path`` (safetensors + JSON with checksums, atomically)."""
        if not self.fingerprint:
            raise ValueError(
                "This EncodedCorpus has no fingerprint, so no model could check it was made "
                "with its settings; encode the documents with E2LLMPipeline.encode() first."
            )
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors({"features": self.features, "mask": self.mask}, out / CORPUS_TENSORS)
        meta: dict[str, Any] = {
            "format_version": CORPUS_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "chunks": [c.to_dict() for c in self.chunks],
            "context_tokens": self.context_tokens,
            "files": {CORPUS_TENSORS: sha256(out / CORPUS_TENSORS)},
        }
        meta = json.loads(json.dumps(meta))
        meta["meta_sha256"] = _meta_digest(meta)
        write_bytes(out / CORPUS_META, json.dumps(meta).encode())
        return out

    @classmethod
    def load(cls, path: str | Path) -> EncodedCorpus:
        """Read a corpus written by :meth:`save`; anything corrupt or incomplete is refused."""
        root = Path(path)
        meta = _read_meta(root)
        tensors = _read_tensors(root, meta["files"][CORPUS_TENSORS])
        try:
            corpus = cls(
                [Chunk(**c) for c in meta["chunks"]],
                tensors["features"],
                tensors["mask"],
                list(meta["context_tokens"]),
                meta["fingerprint"],
            )
        except ValueError as err:
            raise ValueError(
                f"Encoded corpus at {root} is inconsistent ({err}); re-encode it."
            ) from err
        if not torch.isfinite(corpus.features).all():
            raise ValueError(f"Encoded corpus at {root} holds NaN/inf features; re-encode it.")
        return corpus


def _meta_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _refuse(root: Path, why: str) -> ValueError:
    return ValueError(
        f"Encoded corpus at {root} {why}; it cannot be used. Re-encode the documents "
        "(E2LLMPipeline.encode(...).save(path))."
    )


def _read_meta(root: Path) -> dict[str, Any]:
    """``corpus.json``, checked: format, own checksum, every key, and their shapes."""
    try:
        meta = json.loads((root / CORPUS_META).read_text())
    except FileNotFoundError as err:
        raise ValueError(f"{root} is not a saved EncodedCorpus ({err.filename} missing).") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _refuse(root, f"is corrupt ({err})") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != CORPUS_FORMAT_VERSION:
        raise _refuse(
            root, f"has format {version!r}, not {CORPUS_FORMAT_VERSION} (older ones lack checksums)"
        )
    if set(meta) != _META_KEYS:
        missing, extra = sorted(_META_KEYS - set(meta)), sorted(set(meta) - _META_KEYS)
        raise _refuse(root, f"has a malformed {CORPUS_META} (missing {missing}, unknown {extra})")
    if meta["meta_sha256"] != _meta_digest(meta):
        raise _refuse(
            root, f"does not match the sha256 recorded in {CORPUS_META} (corrupt or edited)"
        )
    fingerprint, chunks, counts = meta["fingerprint"], meta["chunks"], meta["context_tokens"]
    if not isinstance(fingerprint, dict) or not fingerprint:
        raise _refuse(root, "has no fingerprint of the settings it was encoded with")
    if not isinstance(chunks, list) or not all(
        isinstance(c, dict) and set(c) == _CHUNK_KEYS for c in chunks
    ):
        raise _refuse(root, f"has malformed chunk records (each needs {sorted(_CHUNK_KEYS)})")
    if not isinstance(counts, list) or not all(isinstance(t, int) for t in counts):
        raise _refuse(root, "has malformed context_tokens (a list of ints)")
    if not isinstance(meta["files"], dict) or CORPUS_TENSORS not in meta["files"]:
        raise _refuse(root, f"records no checksum for {CORPUS_TENSORS}")
    return meta


def _read_tensors(root: Path, digest: str) -> dict[str, torch.Tensor]:
    file = root / CORPUS_TENSORS
    if not file.is_file():
        raise _refuse(root, f"is incomplete: {CORPUS_TENSORS} is missing")
    if sha256(file) != digest:
        raise _refuse(root, f"is corrupt: {CORPUS_TENSORS} does not match its recorded sha256")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise _refuse(root, f"is corrupt ({err})") from err
    if set(tensors) != {"features", "mask"}:
        raise _refuse(root, f"holds tensors {sorted(tensors)}, not features and mask")
    if tensors["features"].dim() != 3 or tensors["mask"].dim() != 2:
        raise _refuse(root, "holds tensors of the wrong rank")
    return tensors


def top_chunks(corpus: EncodedCorpus, scores: torch.Tensor, capacity: int) -> EncodedCorpus:
    """The ``capacity`` highest-scoring chunks of ``corpus``, in document order.

    Ties go to the earlier chunk; ``dropped_chunks`` counts what was left out.
    """
    top = TopChunks(capacity)
    top.add(corpus, scores)
    return top.result()


class TopChunks:
    """A running top set: at most ``capacity`` chunks (with features) of everything added.

    Memory holds ``capacity`` chunks plus the part being added, however many are added.

    Example:
        >>> top = TopChunks(100)  # doctest: +SKIP
        >>> for part in parts: top.add(part, scores_of(part))  # doctest: +SKIP
        >>> corpus = top.result()  # doctest: +SKIP
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"TopChunks needs a capacity >= 1, got {capacity}.")
        self.capacity = capacity
        self.kept: EncodedCorpus | None = None
        self.scores = torch.zeros(0)

    def add(self, part: EncodedCorpus, scores: torch.Tensor) -> None:
        """Offer ``part``'s chunks (document order, after those added before) with their scores."""
        joined = part if self.kept is None else EncodedCorpus.concat([self.kept, part])
        all_scores = torch.cat([self.scores, scores.float().cpu()])
        if len(joined) > self.capacity:
            keep = torch.sort(all_scores, descending=True, stable=True).indices[: self.capacity]
            keep = keep.sort().values
            dropped = joined.dropped_chunks + len(joined) - self.capacity
            joined, all_scores = joined.select(keep.tolist()), all_scores[keep]
            joined.dropped_chunks = dropped
        self.kept, self.scores = joined, all_scores

    def result(self) -> EncodedCorpus:
        if self.kept is None:
            raise ValueError("No chunks were added.")
        return self.kept


def overflow_capacity(model: E2LLMModel, n_chunks: int, room: int, mode: OnOverflow) -> int:
    """Chunks that fit ``room`` soft-token positions; refuses in ``error`` mode or if none fit."""
    per = model.config.encoder.tokens_per_chunk
    capacity, window = max(room, 0) // per, model.max_positions
    if mode == "error":
        raise ValueError(
            f"The documents make {n_chunks} chunks ({n_chunks * per} soft tokens), but only "
            f"{max(room, 0)} positions of the decoder's window of {window} are left next to "
            f"the prompt and max_new_tokens (room for {capacity} chunks). Pass "
            "on_overflow='select' (e2llm ask: --on-overflow select) to answer from the chunks "
            "most relevant to the question, or give fewer or shorter documents."
        )
    if capacity < 1:
        raise ValueError(
            "The prompt and max_new_tokens leave no room for any chunk in the decoder's window "
            f"of {window} positions; shorten the question, system message or history, or lower "
            "max_new_tokens."
        )
    return capacity


def dropped_message(corpus: EncodedCorpus, window: int) -> str:
    """The warning for a corpus cut down to the chunks most relevant to the question."""
    total = len(corpus) + corpus.dropped_chunks
    return (
        f"The documents make {total} chunks, more than the decoder's window of {window} "
        f"positions holds; answering from the {len(corpus)} chunks most relevant to the "
        f"question ({corpus.dropped_chunks} left out, see usage.dropped_chunks). Pass "
        "on_overflow='error' to refuse such input instead."
    )
