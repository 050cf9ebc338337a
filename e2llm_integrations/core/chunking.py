"""Split documents into encoder-sized chunks that keep their provenance.

Chunks hold at most ``chunk_tokens`` encoder tokens, are cut back to a sentence end or
line break where one lies in the second half of the window, and remember their
document id and character offsets. Long documents are tokenized in bounded segments,
so a million-token input never materialises as one token list.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ChunkingConfig

logger = logging.getLogger(__name__)

SEGMENT_CHARS = 20_000
"""Characters tokenized at once; segments end at a paragraph, line or sentence break."""

_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]*$")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, what: str) -> None:
    """Refuse text holding lone surrogates (not valid Unicode; tokenizers reject it).

    Args:
        text: The text to check.
        what: How to name it in the message, e.g. ``"Document 'notes.txt'"``.
    """
    found = _SURROGATE.search(text)
    if found is not None:
        raise ValueError(
            f"{what} holds a lone surrogate (U+{ord(found.group()):04X} at character "
            f"{found.start()}), which is not valid Unicode: it comes from bytes that were not "
            "decoded as text, e.g. non-UTF-8 input read with errors='surrogateescape'. Decode "
            "the original bytes with their real encoding (for such a string: "
            "text.encode('utf-8', 'surrogateescape').decode('cp1252'), say), or drop the bad "
            "characters with text.encode('utf-8', 'replace').decode('utf-8')."
        )


Document = str | os.PathLike[str]
"""A document: its text, or the path of a UTF-8 text file."""
SKIP_HINT = "or leave it out (`e2llm ask --skip-unreadable` skips unreadable files in folders)"


def _read_file(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"Document path {path} does not exist or is not a file.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text ({err}); convert it to UTF-8 text first (e.g. "
            f"`iconv -f latin1 -t utf-8`), {SKIP_HINT}."
        ) from err
    except OSError as err:
        raise ValueError(
            f"Cannot read {path} ({err.strerror or err}); fix its permissions, {SKIP_HINT}."
        ) from err


def read_documents(documents: Iterable[Document]) -> tuple[list[str], list[str]]:
    """Texts and ids for ``documents``: strings are text, ``os.PathLike`` are files."""
    if documents is None:
        raise TypeError("documents is None; pass a list of texts (str) or paths, e.g. [text].")
    if isinstance(documents, bytes | bytearray | memoryview):
        raise TypeError(
            "documents is bytes; decode it to text first (data.decode('utf-8')) and pass a "
            "list: [text]."
        )
    if isinstance(documents, str | os.PathLike):
        raise TypeError(
            "documents must be a list of texts or paths, not a single one; wrap it in []."
        )
    try:
        items = iter(documents)
    except TypeError as err:
        raise TypeError(
            f"documents must be a list of texts or paths, got a {type(documents).__name__}."
        ) from err
    texts, ids = [], []
    for i, doc in enumerate(items):
        if isinstance(doc, os.PathLike):
            texts.append(_read_file(Path(doc)))
            ids.append(str(doc))
        elif isinstance(doc, str):
            texts.append(doc)
            ids.append(str(i))
        elif isinstance(doc, bytes | bytearray):
            raise TypeError(
                f"Document {i} is bytes; decode it to text first (doc.decode('utf-8'), with "
                "the encoding it was written in)."
            )
        else:
            raise TypeError(
                f"Document {i} is a {type(doc).__name__}; pass str text or a pathlib.Path."
            )
    return texts, ids


def check_prompt_text(question: Any, prompt: dict[str, Any] | None = None) -> None:
    """Refuse a question (or system message, history turn) that is not usable text."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}.")
    if not question.strip():
        raise ValueError("The question is empty; ask something about the documents.")
    check_text(question, "The question")
    prompt = prompt or {}
    if isinstance(prompt.get("system"), str):
        check_text(prompt["system"], "The system message")
    for i, turn in enumerate(prompt.get("history") or ()):
        if isinstance(turn, dict) and isinstance(turn.get("content"), str):
            check_text(turn["content"], f"History turn {i}")


@dataclass(frozen=True)
class Chunk:
    """A span of one document.

    Attributes:
        text: The chunk's text, exactly ``document[start:end]``.
        doc_id: Identifier of the source document.
        start: Character offset of the first character in the document.
        end: Character offset one past the last character.
        index: Position of the chunk within its document.
        n_tokens: Encoder tokens in the chunk (special tokens excluded).
    """

    text: str
    doc_id: str
    start: int
    end: int
    index: int
    n_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "doc_id": self.doc_id,
            "start": self.start,
            "end": self.end,
            "index": self.index,
            "n_tokens": self.n_tokens,
        }


def _segments(text: str, size: int = SEGMENT_CHARS) -> Iterator[tuple[int, str]]:
    """Yield ``(offset, segment)`` pieces of ``text`` ending at natural breaks."""
    pos = 0
    while pos < len(text):
        end = min(pos + size, len(text))
        if end < len(text):
            window = text[pos + size // 2 : end]
            for sep in ("\n\n", "\n", ". ", " "):
                cut = window.rfind(sep)
                if cut >= 0:
                    end = pos + size // 2 + cut + len(sep)
                    break
        yield pos, text[pos:end]
        pos = end


class Chunker:
    """Cuts text into chunks measured in the encoder's tokens.

    Args:
        tokenizer: A fast Hugging Face tokenizer (offsets mapping is required).
        config: Chunk size, overlap and boundary policy.

    Example:
        >>> chunker = Chunker(tokenizer, ChunkingConfig(chunk_tokens=64))  # doctest: +SKIP
        >>> chunks = list(chunker.chunk(["A long text. " * 200], doc_ids=["a"]))  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, config: ChunkingConfig | None = None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("Chunker needs a fast tokenizer (one that returns offsets).")
        self.tokenizer = tokenizer
        self.config = config or ChunkingConfig()

    def chunk(self, texts: Iterable[str], doc_ids: Sequence[str] | None = None) -> Iterator[Chunk]:
        """Yield the chunks of every document, in order. Empty documents are skipped."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"Document {i} is a {type(text).__name__}; pass documents as str "
                    "(read files first, or give paths to E2LLMPipeline)."
                )
            doc_id = doc_ids[i] if doc_ids is not None else str(i)
            check_text(text, f"Document {doc_id!r}")
            if not text.strip():
                logger.warning("Document %r is empty or whitespace only; skipped.", doc_id)
                continue
            yield from self._chunk_document(text, doc_id)

    def _chunk_document(self, text: str, doc_id: str) -> Iterator[Chunk]:
        index = 0
        for base, segment in _segments(text):
            enc = self.tokenizer(
                segment, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            offsets = [o for o in enc["offset_mapping"] if o[1] > o[0]]
            for start_tok, end_tok in self._windows(segment, offsets):
                start, end = offsets[start_tok][0], offsets[end_tok - 1][1]
                yield Chunk(
                    text=segment[start:end],
                    doc_id=doc_id,
                    start=base + start,
                    end=base + end,
                    index=index,
                    n_tokens=end_tok - start_tok,
                )
                index += 1

    def _windows(self, segment: str, offsets: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        size, overlap = self.config.chunk_tokens, self.config.overlap_tokens
        n, i = len(offsets), 0
        while i < n:
            j = min(i + size, n)
            if j < n and self.config.respect_boundaries:
                j = self._boundary(segment, offsets, i, j)
            yield i, j
            if j >= n:
                break
            i = max(j - overlap, i + 1)

    @staticmethod
    def _boundary(segment: str, offsets: list[tuple[int, int]], i: int, j: int) -> int:
        """Largest k in (i + (j-i)/2, j] such that a sentence or line ends before token k."""
        for k in range(j, i + (j - i) // 2, -1):
            prev_end, next_start = offsets[k - 1][1], offsets[k][0]
            if "\n" in segment[prev_end:next_start]:
                return k
            if (
                _SENTENCE_END.search(segment[offsets[k - 1][0] : prev_end])
                and next_start > prev_end
            ):
                return k
        return j
