"""Issue 13, case 2: the converted-model cache is verified and rebuilt, never trusted blindly.

A fake conversion (a builder writing small files) stands in for the real 20-second GGUF
dequantization; :func:`ensure_converted` is the code the real conversion runs through.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from e2llm_integrations.core import models
from e2llm_integrations.core.models import (
    CACHE_ENV,
    CONVERTED_RECORD,
    cache_problem,
    convert_gguf,
    ensure_converted,
)

WEIGHTS = bytes(range(256)) * 64  # 16 KiB
TOKENIZER = b'{"model": "fake"}'


class FakeConversion:
    """Writes a fake model folder and counts how often it ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, out: Path) -> None:
        self.runs += 1
        (out / "model.safetensors").write_bytes(WEIGHTS)
        (out / "sub").mkdir()
        (out / "sub" / "tokenizer.json").write_bytes(TOKENIZER)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    models._VERIFIED.clear()
    return tmp_path / "cache" / "models" / "fake-1.0"


def _intact(dest: Path) -> bool:
    return (dest / "model.safetensors").read_bytes() == WEIGHTS and (
        dest / "sub" / "tokenizer.json"
    ).read_bytes() == TOKENIZER


def test_conversion_records_checksums_and_is_reused(dest: Path) -> None:
    build = FakeConversion()
    assert ensure_converted(dest, build, "fake.gguf") == dest
    record = json.loads((dest / CONVERTED_RECORD).read_text())
    assert set(record["files"]) == {"model.safetensors", "sub/tokenizer.json"}
    assert record["files"]["model.safetensors"]["size"] == len(WEIGHTS)
    assert cache_problem(dest) is None
    models._VERIFIED.clear()  # a new process hashes again and still finds it intact
    ensure_converted(dest, build, "fake.gguf")
    assert build.runs == 1 and _intact(dest)
    assert not [
        p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.") and p.is_dir()
    ]


def _truncate(dest: Path) -> None:
    (dest / "model.safetensors").write_bytes(WEIGHTS[:1000])


def _overwrite_4k(dest: Path) -> None:
    """4 KiB of zeros in place, size and modification time kept (only a hash can tell)."""
    file = dest / "model.safetensors"
    stat = file.stat()
    with open(file, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\0" * 4096)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "truncated": (_truncate, "has 1000 bytes instead of 16384"),
    "overwritten": (_overwrite_4k, "does not match its recorded sha256"),
    "deleted": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    "nested file deleted": (lambda d: (d / "sub" / "tokenizer.json").unlink(), "sub/tokenizer"),
    "no record": (lambda d: (d / CONVERTED_RECORD).unlink(), "interrupted conversion"),
    "garbage record": (lambda d: (d / CONVERTED_RECORD).write_text("{"), "unreadable"),
    "empty record": (lambda d: (d / CONVERTED_RECORD).write_text('{"files": {}}'), "unreadable"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_is_rebuilt_with_one_log_line(
    dest: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    build = FakeConversion()
    ensure_converted(dest, build, "fake.gguf")
    harm, reason = DAMAGE[damage]
    harm(dest)
    models._VERIFIED.clear()  # the next process
    assert reason in (cache_problem(dest) or "")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=models.__name__):
        assert ensure_converted(dest, build, "fake.gguf") == dest
    lines = [r for r in caplog.records if r.name == models.__name__]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "damaged" in lines[0].getMessage() and reason in lines[0].getMessage()
    assert build.runs == 2 and _intact(dest) and cache_problem(dest) is None
    leftovers = [
        p.name for p in dest.parent.iterdir() if p.name not in (dest.name, f".{dest.name}.lock")
    ]
    assert leftovers == []


def test_damage_after_verification_in_the_same_process_is_caught(dest: Path) -> None:
    build = FakeConversion()
    ensure_converted(dest, build, "fake.gguf")
    assert cache_problem(dest) is None  # verified and remembered by this process
    (dest / "model.safetensors").write_bytes(b"\xff" * len(WEIGHTS))  # same size, new mtime
    assert "sha256" in (cache_problem(dest) or "")
    ensure_converted(dest, build, "fake.gguf")
    assert build.runs == 2 and _intact(dest)


def test_a_failed_rebuild_leaves_no_half_written_folder(dest: Path) -> None:
    ensure_converted(dest, FakeConversion(), "fake.gguf")
    _truncate(dest)

    def broken(out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("conversion crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        ensure_converted(dest, broken, "fake.gguf")
    assert "1000 bytes" in (cache_problem(dest) or "")  # still detected, not replaced
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(
        [dest.name, f".{dest.name}.lock"]
    )


WORKER = """
import importlib.util, pathlib, sys, time, types
# models.py and the core.io it imports, without core/__init__ (torch): fast to start.
package = types.ModuleType("e2llm_core_copy")
package.__path__ = [str(pathlib.Path({models!r}).parent)]
sys.modules[package.__name__] = package
spec = importlib.util.spec_from_file_location("e2llm_core_copy.models", {models!r})
m = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = m
spec.loader.exec_module(m)

def build(out):
    with open({count!r}, "a") as fh:
        fh.write("x")
    time.sleep(1.0)
    (out / "model.safetensors").write_bytes({weights!r})

dest = m.ensure_converted(pathlib.Path({dest!r}), build, "fake.gguf")
assert m.cache_problem(dest) is None
"""


@pytest.mark.parametrize("start", ["missing", "damaged"])
def test_concurrent_processes_convert_once(dest: Path, tmp_path: Path, start: str) -> None:
    if start == "damaged":
        dest.mkdir(parents=True)
        (dest / "model.safetensors").write_bytes(b"partial")  # no record: an interrupted run
    count = tmp_path / "builds.txt"
    code = textwrap.dedent(WORKER).format(
        models=models.__file__, count=str(count), weights=WEIGHTS[:4096], dest=str(dest)
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert count.read_text() == "x", "exactly one process converts; the others wait and reuse"
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS[:4096]


def test_resolve_goes_through_the_verified_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``resolve`` of the bundled decoder, with the dequantization replaced by the fake one."""
    models._VERIFIED.clear()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    build = FakeConversion()
    monkeypatch.setattr(models, "_dequantize", lambda src, gguf, out: build(out))
    first = Path(models.resolve("smollm2-135m-instruct"))
    assert first.parent == tmp_path / "cache" / "models" and _intact(first)
    _truncate(first)
    models._VERIFIED.clear()
    with caplog.at_level(logging.WARNING, logger=models.__name__):
        assert Path(models.resolve("smollm2-135m-instruct")) == first
    assert build.runs == 2 and _intact(first)
    assert [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]


def test_convert_gguf_reuses_an_intact_folder_without_converting(dest: Path) -> None:
    ensure_converted(dest, FakeConversion(), "fake.gguf")
    models._VERIFIED.clear()
    assert convert_gguf(Path("/nonexistent"), "missing.gguf", dest) == dest
