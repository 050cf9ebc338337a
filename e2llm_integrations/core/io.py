"""Atomic writes: every file and folder the library writes appears whole or not at all.

A file is written to a unique temporary sibling (same folder, so the rename never
crosses file systems), flushed to disk, and renamed over the target with
``os.replace``. A folder is built in a temporary sibling and swapped in by renames.
A writer that raises, or is interrupted, leaves the previous content and removes its
temporary; only a hard kill (``kill -9``, power loss) can leave a hidden
``.<name>.*.tmp`` sibling behind, never a half-written target. Concurrent writers
of one path never interleave: each writes its own temporary, and the last rename wins.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_json(root / "result.json", {"f1": 0.5})
    >>> (root / "result.json").read_text()
    '{\\n  "f1": 0.5\\n}\\n'
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FILE_MODE = 0o644
"""Mode of written files (``mkstemp`` creates 0600; checkpoints and data are shared)."""
DIR_MODE = 0o755
"""Mode of written folders."""
_SWAP_TRIES = 16


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder at ``path`` if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int = FILE_MODE) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to; it replaces ``path`` when the block ends.

    For writers that need a file name (``safetensors``, ``torch.save``). If the block
    raises, the temporary is removed and ``path`` keeps its previous content.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "blob.bin"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_bytes(b"data")
        >>> target.read_bytes()
        b'data'
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)


def write_bytes(path: str | Path, data: bytes, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created)."""
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, mode: int = FILE_MODE) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (newlines are written as given)."""
    return write_bytes(path, text.encode("utf-8"), mode)


def write_json(
    path: str | Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """Write ``data`` as JSON (UTF-8, non-ASCII kept, a final newline) atomically."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    return write_text(path, text + "\n")


def save_tensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, mode: int = FILE_MODE
) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) as safetensors atomically."""
    from safetensors.torch import save_file

    with atomic_path(path, mode) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    return Path(path)


def swap_folder(src: Path, dest: Path, old: Path | None = None) -> None:
    """Rename folder ``src`` to ``dest``; a previous ``dest`` is moved to ``old``, then removed.

    ``old`` defaults to a unique hidden sibling. A fixed ``old`` lets a reader that
    finds no ``dest`` after a kill between the two renames fall back on it (training
    resume does); it is for a single writer. With the default, concurrent swaps of
    one ``dest`` each leave one whole folder there: a swap that loses a race retries.

    Raises:
        OSError: Other writers kept replacing ``dest`` (after several tries), or a
            rename failed for another reason.
    """
    for _ in range(_SWAP_TRIES):
        aside = None
        if dest.exists() or dest.is_symlink():
            aside = old or dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:12]}")
            _remove(aside)
            try:
                os.rename(dest, aside)
            except FileNotFoundError:  # another writer moved it away meanwhile
                aside = None
        try:
            os.rename(src, dest)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                if aside is not None:  # another writer's folder arrived between our renames
                    _remove(aside)
                continue
            if aside is not None:  # put the previous folder back before reporting
                with contextlib.suppress(OSError):
                    os.rename(aside, dest)
            raise
        if aside is not None:
            _remove(aside)
        if old is not None:  # also a stale one, left by a writer killed mid-swap
            _remove(old)
        _fsync_dir(dest.parent)
        return
    raise OSError(f"Could not swap {src} into {dest}: other writers kept replacing it.")


@contextlib.contextmanager
def atomic_folder(
    dest: str | Path,
    *,
    tmp: str | Path | None = None,
    old: str | Path | None = None,
    mode: int = DIR_MODE,
) -> Iterator[Path]:
    """Build a folder in a temporary sibling; it replaces ``dest`` when the block ends.

    Args:
        dest: The folder to create or replace.
        tmp: A fixed name for the folder being built, cleared first (default: a unique
            hidden sibling, ``.<name>.*.tmp``).
        old: Where the previous ``dest`` waits during the swap (see :func:`swap_folder`).
        mode: Mode of the new folder.

    If the block raises, the temporary folder is removed and ``dest`` is untouched.

    Example:
        >>> import tempfile
        >>> dest = Path(tempfile.mkdtemp()) / "export"
        >>> with atomic_folder(dest) as folder:
        ...     _ = write_text(folder / "a.txt", "a")
        >>> sorted(p.name for p in dest.iterdir())
        ['a.txt']
    """
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    else:
        build = Path(tmp)
        _remove(build)
        build.mkdir()
    try:
        build.chmod(mode)
        yield build
        swap_folder(build, out, None if old is None else Path(old))
    finally:
        if build.exists():
            _remove(build)
