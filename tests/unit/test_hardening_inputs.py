"""Issue 13, cases 6-8: bad text, bad document containers, bad decoding options, and
unreadable files in folders get clear errors (or are skipped on request)."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from e2llm_integrations import cli
from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.chunking import Chunk

QUESTION = "What colour is the sky?"
TEXT = "The sky over the harbour is blue. Gulls circle the quay. " * 4


# ---------------------------------------------------------------------- case 6: text
def test_lone_surrogates_name_the_document_and_the_fix(tiny_pipeline: E2LLMPipeline) -> None:
    bad = "caf\udce9 au lait"  # b"caf\xe9" read as UTF-8 with errors="surrogateescape"
    with pytest.raises(ValueError, match="Document '1' holds a lone surrogate") as err:
        tiny_pipeline.ask([TEXT, bad], QUESTION)
    message = str(err.value)
    assert "U+DCE9 at character 3" in message and "surrogateescape" in message
    assert ".decode(" in message  # how to fix the encoding
    with pytest.raises(ValueError, match="Document '0' holds a lone surrogate"):
        tiny_pipeline.encode([bad])


def test_lone_surrogates_in_the_question_or_chunks(tiny_pipeline: E2LLMPipeline) -> None:
    corpus = tiny_pipeline.encode([TEXT])
    with pytest.raises(ValueError, match="The question holds a lone surrogate"):
        tiny_pipeline.ask(corpus, "sky\ud800?")
    with pytest.raises(ValueError, match="The system message holds a lone surrogate"):
        tiny_pipeline.ask(corpus, QUESTION, system="be brief\udc80")
    chunk = Chunk("bad \udcff chunk", "notes", 0, 11, 0, 3)
    with pytest.raises(ValueError, match="Chunk 0 \\(document 'notes'\\) holds a lone surrogate"):
        tiny_pipeline.encode_chunks([chunk])


@pytest.mark.parametrize(
    ("documents", "error", "message"),
    [
        (None, TypeError, "documents is None; pass a list"),
        (b"raw bytes", TypeError, "documents is bytes; decode it to text first"),
        (bytearray(b"raw"), TypeError, "documents is bytes"),
        ([TEXT, b"raw bytes"], TypeError, "Document 1 is bytes; decode it to text first"),
        (42, TypeError, "documents must be a list of texts or paths, got a int"),
        ("one text", TypeError, "not a single one; wrap it in"),
    ],
)
def test_bad_document_containers(
    tiny_pipeline: E2LLMPipeline, documents: Any, error: type[Exception], message: str
) -> None:
    for call in (tiny_pipeline.encode, lambda d: tiny_pipeline.ask(d, QUESTION)):
        with pytest.raises(error, match=message):
            call(documents)


def test_unreadable_paths_say_how_to_skip_them(
    tiny_pipeline: E2LLMPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match="image.png is not UTF-8 text.*--skip-unreadable"):
        tiny_pipeline.encode([binary])
    locked = tmp_path / "locked.txt"
    locked.write_text(TEXT)
    real = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(ValueError, match="Cannot read .*locked.txt \\(Permission denied\\)"):
        tiny_pipeline.encode([locked])


# ---------------------------------------------------------------------- case 7: options
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"temperature": math.nan}, ValueError, "temperature must be a finite number"),
        ({"temperature": math.inf}, ValueError, "temperature must be a finite number"),
        ({"temperature": "hot"}, TypeError, "temperature must be a number"),
        ({"top_p": math.nan}, ValueError, "top_p must be a finite number"),
        ({"max_new_tokens": 8.0}, TypeError, "max_new_tokens must be a whole number .*float"),
        ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens must be a whole number"),
        ({"max_new_tokens": True}, TypeError, "max_new_tokens must be a whole number"),
        ({"stop": [""]}, ValueError, "stop strings must not be empty"),
        ({"stop": ["\n", ""]}, ValueError, "stop strings must not be empty"),
        ({"stop": [3]}, TypeError, "stop strings must be str"),
        ({"stop": 3}, TypeError, "stop must be a string or a list"),
        ({"seed": 1.5}, TypeError, "seed must be a whole number"),
    ],
)
def test_bad_generation_options(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        GenerationConfig(**options)


def test_good_generation_options_are_normalised() -> None:
    import numpy as np

    count: Any = np.int64(8)
    cfg = GenerationConfig(max_new_tokens=count, temperature=1, stop=["\n\n"], seed=3)
    assert cfg.max_new_tokens == 8 and type(cfg.max_new_tokens) is int
    assert cfg.temperature == 1.0 and cfg.stop == ("\n\n",)
    assert GenerationConfig(stop="END").stop == ("END",)
    assert GenerationConfig(stop=None).stop == ()  # type: ignore[arg-type]


# ---------------------------------------------------------------------- CLI (cases 6-8)
@pytest.fixture
def tiny_cli(tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``e2llm ask`` over the tiny pipeline; returns the ``from_pretrained`` calls."""
    calls: list[dict[str, Any]] = []

    def from_pretrained(**kwargs: Any) -> E2LLMPipeline:
        calls.append(kwargs)
        return tiny_pipeline

    monkeypatch.setattr(E2LLMPipeline, "from_pretrained", staticmethod(from_pretrained))
    return calls


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), errors="surrogateescape"))


def test_cli_stdin_must_be_utf8(
    tiny_cli: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stdin(monkeypatch, b"Caf\xe9 prices rose.\n")
    assert cli.main(["ask", "--docs", "-", "--", QUESTION]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "stdin is not UTF-8 text (byte 0xe9 at offset 3)" in err and "iconv" in err
    _stdin(monkeypatch, TEXT.encode())
    assert cli.main(["ask", "--docs", "-", "--max-new-tokens", "2", "--json", "--", QUESTION]) == 0
    assert json.loads(capsys.readouterr().out)["usage"]["n_chunks"] >= 1


def test_cli_surrogates_from_a_text_stdin_are_explained(
    tiny_cli: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Caf\udce9 prices rose."))  # no .buffer
    assert cli.main(["ask", "--docs", "-", "--", QUESTION]) == cli.EXIT_USAGE
    assert "Document '0' holds a lone surrogate" in capsys.readouterr().err


def test_cli_bad_temperature_exits_2(
    tiny_cli: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text(TEXT)
    assert cli.main(["ask", "--docs", str(doc), "--temperature", "nan", "--", QUESTION]) == 2
    assert "temperature must be a finite number" in capsys.readouterr().err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(TEXT)
    (root / "sub" / "b.txt").write_text("Gulls nest on the lighthouse roof. " * 3)
    (root / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 binary")
    return root


def test_cli_unreadable_file_in_a_folder_fails_with_a_hint(
    tiny_cli: list[dict[str, Any]], folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["ask", "--docs", str(folder), "--", QUESTION]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "photo.jpg is not UTF-8 text" in err and "--skip-unreadable" in err


def test_cli_skip_unreadable_reports_and_answers_from_the_rest(
    tiny_pipeline: E2LLMPipeline,
    tiny_cli: list[dict[str, Any]],
    folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["ask", "--docs", str(folder), "--skip-unreadable", "--max-new-tokens", "2", "--json"]
    assert cli.main([*argv, "--", QUESTION]) == 0
    captured = capsys.readouterr()
    assert f"skipped unreadable file {folder / 'photo.jpg'}: not UTF-8 text" in captured.err
    assert "skipped 1 of 3 files" in captured.err
    good = [folder / "a.txt", folder / "sub" / "b.txt"]
    want = tiny_pipeline.ask(good, QUESTION, GenerationConfig(max_new_tokens=2))
    assert json.loads(captured.out)["usage"] == want.usage.to_dict()


def test_cli_folder_with_only_unreadable_files(
    tiny_cli: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.bin").write_bytes(b"\xff\xfe\xfd")
    assert cli.main(["ask", "--docs", str(tmp_path), "--skip-unreadable", "--", QUESTION]) == 2
    assert "holds no readable files (1 skipped)" in capsys.readouterr().err


def test_cli_overflow_and_remote_code_options(
    tiny_cli: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "facts.txt"
    doc.write_text("".join(f"Fact {i}: harbour {i} has a blue door.\n" for i in range(300)))
    base = ["ask", "--docs", str(doc), "--max-new-tokens", "400", "--expand", "0"]
    assert cli.main([*base, "--on-overflow", "error", "--", QUESTION]) == cli.EXIT_USAGE
    assert "on_overflow='select'" in capsys.readouterr().err
    assert cli.main([*base, "--json", "--trust-remote-code", "--", QUESTION]) == 0
    usage = json.loads(capsys.readouterr().out)["usage"]
    assert usage["dropped_chunks"] > 0 and usage["n_chunks"] > 0
    assert tiny_cli[-1]["trust_remote_code"] is True
    assert "trust_remote_code" not in tiny_cli[0]  # off unless asked
