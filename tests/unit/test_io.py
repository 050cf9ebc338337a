"""Atomic writes (``core.io``): content round trips, nothing partial on failure, folder
swaps, and concurrent writers and readers that never see a mix of two writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from e2llm_integrations.core import io
from e2llm_integrations.core.training.state import LAST, OLD, TMP, find_resume


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_files_round_trip_with_shared_mode(tmp_path: Path) -> None:
    io.write_bytes(tmp_path / "sub" / "a.bin", b"\x00\xffbytes")  # parent folders are created
    io.write_text(tmp_path / "b.txt", "café\r\nline two\n")
    io.write_json(tmp_path / "c.json", {"name": "Zoë", "n": [1, 2]})
    tensors = {"w": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(2, dtype=torch.int64)}
    io.save_tensors(tensors, tmp_path / "d.safetensors")  # a transposed (non-contiguous) view

    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\xffbytes"
    assert (tmp_path / "b.txt").read_bytes() == "café\r\nline two\n".encode()  # as given
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"name": "Zoë", "n": [1, 2]}
    assert "Zoë" in text and text.endswith("}\n")
    loaded = load_file(tmp_path / "d.safetensors")
    for key, value in tensors.items():
        torch.testing.assert_close(loaded[key], value)
    for name in ("b.txt", "c.json", "d.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == io.FILE_MODE
    assert _names(tmp_path) == ["b.txt", "c.json", "d.safetensors", "sub"]  # no temporaries


def test_a_writer_that_raises_midway_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    io.write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="midway"), io.atomic_path(target) as tmp:
        with open(tmp, "w") as fh:
            fh.write("new, half")
            fh.flush()
        raise RuntimeError("died midway")
    assert target.read_text() == "old\n"
    with pytest.raises(AttributeError):  # a value that is no tensor fails inside the writer
        io.save_tensors({"ok": torch.ones(2), "bad": "text"}, target)  # type: ignore[dict-item]
    assert target.read_text() == "old\n"
    assert _names(tmp_path) == ["out.jsonl"]


def test_a_failing_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    io.write_json(target, {"v": 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        io.write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert _names(tmp_path) == ["out.json"]


def _folder(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        io.write_text(root / name, text)


def test_folder_swap_replaces_the_old_contents(tmp_path: Path) -> None:
    dest = tmp_path / "export"
    with io.atomic_folder(dest) as build:
        _folder(build, {"a.txt": "1", "b.txt": "1"})
    with io.atomic_folder(dest) as build:
        assert build.parent == tmp_path and build != dest and build.name.startswith(".export.")
        _folder(build, {"c.txt": "2"})
        assert _names(dest) == ["a.txt", "b.txt"]  # the old folder stays until the swap
    assert _names(dest) == ["c.txt"] and (dest / "c.txt").read_text() == "2"
    assert dest.stat().st_mode & 0o777 == io.DIR_MODE
    assert _names(tmp_path) == ["export"]


def test_a_folder_writer_that_raises_leaves_the_old_folder(tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    with io.atomic_folder(dest) as build:
        _folder(build, {"a.txt": "old"})
    with pytest.raises(KeyboardInterrupt), io.atomic_folder(dest) as build:
        _folder(build, {"a.txt": "new", "b.txt": "new"})
        raise KeyboardInterrupt
    assert _names(dest) == ["a.txt"] and (dest / "a.txt").read_text() == "old"
    assert _names(tmp_path) == ["cache"]


def test_a_failed_swap_puts_the_previous_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "export"
    with io.atomic_folder(dest) as build:
        _folder(build, {"a.txt": "old"})
    rename, calls = os.rename, []

    def second_rename_fails(src: str, dst: str) -> None:
        calls.append((src, dst))
        if len(calls) == 2:  # dest -> aside worked; new -> dest fails
            raise PermissionError("read-only file system")
        rename(src, dst)

    monkeypatch.setattr(io.os, "rename", second_rename_fails)
    with pytest.raises(PermissionError), io.atomic_folder(dest) as build:
        _folder(build, {"b.txt": "new"})
    assert _names(dest) == ["a.txt"] and _names(tmp_path) == ["export"]


def test_a_kill_between_the_renames_leaves_the_previous_state_for_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training state's fixed names: after a kill mid-swap ``checkpoint-old`` is whole."""
    last, old, tmp = tmp_path / LAST, tmp_path / OLD, tmp_path / TMP
    (tmp_path / OLD).mkdir()  # a stale one from an earlier kill is cleared
    with io.atomic_folder(last, tmp=tmp, old=old) as build:
        _folder(build, {"trainer_state.pt": "step 1"})
    assert _names(tmp_path) == [LAST]
    rename, calls = os.rename, []

    def killed(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise SystemExit("killed")  # not an OSError: nothing is put back
        rename(src, dst)

    monkeypatch.setattr(io.os, "rename", killed)
    with pytest.raises(SystemExit), io.atomic_folder(last, tmp=tmp, old=old) as build:
        _folder(build, {"trainer_state.pt": "step 2"})
    assert not last.exists() and (old / "trainer_state.pt").read_text() == "step 1"
    assert find_resume(tmp_path) == old


def test_concurrent_file_writers_and_readers_never_see_a_mix(tmp_path: Path) -> None:
    target, size, writers, rounds = tmp_path / "blob.bin", 1 << 18, 4, 12
    io.write_bytes(target, bytes([0]) * size)
    seen: list[bytes] = []
    done = threading.Event()

    def write(i: int) -> None:
        for _ in range(rounds):
            io.write_bytes(target, bytes([i]) * size)

    def read() -> None:
        while not done.is_set():
            seen.append(target.read_bytes())

    reader = threading.Thread(target=read)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(1, writers + 1)]
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    final = target.read_bytes()
    assert len(final) == size and len(set(final)) == 1 and final[0] in range(1, writers + 1)
    assert seen and all(len(s) == size and len(set(s)) == 1 for s in seen)
    assert _names(tmp_path) == ["blob.bin"]


def test_concurrent_folder_writers_leave_one_whole_folder(tmp_path: Path) -> None:
    dest, errors = tmp_path / "converted", []

    def write(i: int) -> None:
        try:
            for _ in range(6):
                with io.atomic_folder(dest) as build:
                    _folder(build, {f"writer{i}-part{k}.txt": str(i) for k in range(i + 1)})
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    writer = int((dest / _names(dest)[0]).read_text())
    assert _names(dest) == [f"writer{writer}-part{k}.txt" for k in range(writer + 1)]
    assert _names(tmp_path) == ["converted"]


def test_old_writer_names_still_import() -> None:
    from e2llm_integrations.core.checkpoint import atomic_save_tensors, atomic_write_bytes

    assert atomic_write_bytes is io.write_bytes and atomic_save_tensors is io.save_tensors
