"""Frozen-encoder feature cache: every paragraph chunked and encoded once.

With a frozen encoder the chunk features never change, so training on CPU reads them
from this store instead of running the encoder each step (the fast path). The store
is saved as safetensors + JSON, atomically, and reused when its fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..chunking import Chunker
from ..encoder import sentence_embeddings
from ..io import save_tensors, write_bytes
from ..model import E2LLMModel

logger = logging.getLogger(__name__)

STORE_META = "store.json"
STORE_TENSORS = "store.safetensors"


def texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()


@dataclass
class ParagraphStore:
    """Chunks and features of a list of paragraphs.

    Attributes:
        offsets: (n_paragraphs + 1,) start of each paragraph's chunks in the chunk arrays.
        chunk_texts: Text of every chunk.
        n_tokens: Encoder tokens of every chunk.
        features: (n_chunks, L, d_enc) float16 features.
        mask: (n_chunks, L).
    """

    offsets: list[int]
    chunk_texts: list[str]
    n_tokens: list[int]
    features: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def chunk_range(self, paragraph: int) -> range:
        return range(self.offsets[paragraph], self.offsets[paragraph + 1])

    def paragraph_tokens(self, paragraph: int) -> int:
        return sum(self.n_tokens[i] for i in self.chunk_range(paragraph))

    def gather(self, chunk_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and mask of the chunks ``chunk_ids``: (n, L, d), (n, L)."""
        idx = torch.as_tensor(list(chunk_ids), dtype=torch.long)
        return self.features[idx].float(), self.mask[idx]

    @classmethod
    def build(
        cls, model: E2LLMModel, paragraphs: Sequence[str], folder: str | Path
    ) -> ParagraphStore:
        """Load the store in ``folder`` if it matches, else chunk + encode + save it."""
        root = Path(folder)
        fingerprint = {**model.feature_fingerprint(), "texts": texts_digest(paragraphs)}
        cached = cls._load(root, fingerprint)
        if cached is not None:
            logger.info("Reusing feature cache %s (%d chunks)", root, len(cached.chunk_texts))
            return cached
        logger.info("Encoding %d paragraphs into %s (once)", len(paragraphs), root)
        chunker = Chunker(model.encoder.tokenizer, model.config.chunking)
        offsets, chunks = [0], []
        for i, text in enumerate(paragraphs):
            found = list(chunker.chunk([text], [str(i)]))
            if not found:
                raise ValueError(f"Paragraph {i} has no text; drop empty paragraphs first.")
            chunks.extend(found)
            offsets.append(len(chunks))
        feats, mask = model.encoder.encode([c.text for c in chunks], progress=True)
        store = cls(
            offsets, [c.text for c in chunks], [c.n_tokens for c in chunks], feats.half(), mask
        )
        store._save(root, fingerprint)
        return store

    def _save(self, root: Path, fingerprint: dict[str, object]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        save_tensors(
            {"features": self.features, "mask": self.mask, "offsets": torch.tensor(self.offsets)},
            root / STORE_TENSORS,
        )
        meta = {
            "fingerprint": fingerprint,
            "chunk_texts": self.chunk_texts,
            "n_tokens": self.n_tokens,
        }
        write_bytes(root / STORE_META, json.dumps(meta).encode())

    @classmethod
    def _load(cls, root: Path, fingerprint: dict[str, object]) -> ParagraphStore | None:
        if not (root / STORE_META).is_file() or not (root / STORE_TENSORS).is_file():
            return None
        try:
            meta = json.loads((root / STORE_META).read_text())
            tensors = load_file(str(root / STORE_TENSORS))
        except Exception as err:  # a corrupt cache is rebuilt, never trusted
            logger.warning("Feature cache %s is unreadable (%s); rebuilding it.", root, err)
            return None
        if meta.get("fingerprint") != fingerprint:
            logger.info("Feature cache %s was made with other settings; rebuilding it.", root)
            return None
        return cls(
            tensors["offsets"].tolist(),
            meta["chunk_texts"],
            meta["n_tokens"],
            tensors["features"],
            tensors["mask"],
        )


QUERY_TENSORS = "queries.safetensors"
QUERY_META = "queries.json"


def question_keys(model: E2LLMModel, questions: Sequence[str], folder: str | Path) -> torch.Tensor:
    """Unit query vectors of ``questions``, as the chunk prefilter embeds a question.

    Cached in ``folder`` next to the paragraph store and reused when the encoder
    settings and the questions are the same.

    Returns:
        (n_questions, d_enc) float32.
    """
    root = Path(folder)
    fingerprint = {**model.feature_fingerprint(), "texts": texts_digest(questions)}
    try:
        if json.loads((root / QUERY_META).read_text()) == fingerprint:
            return load_file(str(root / QUERY_TENSORS))["keys"]
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        logger.info("Query cache %s not usable (%s); encoding the questions.", root, err)
    logger.info("Encoding %d questions into %s (once)", len(questions), root)
    keys = sentence_embeddings(*model.encoder.encode(list(questions), progress=True))
    root.mkdir(parents=True, exist_ok=True)
    save_tensors({"keys": keys.contiguous()}, root / QUERY_TENSORS)
    write_bytes(root / QUERY_META, json.dumps(fingerprint).encode())
    return keys
