"""Every option a caller sets, defined once: decoding, model source, prefilter, expansion.

Each option has one default, one validation rule and one help text, here. The LangChain
and LlamaIndex classes declare their pydantic fields from these dataclasses
(:func:`option_default`, :func:`option_help`, :func:`check_option`) and the ``e2llm``
CLI takes its flag defaults from them; ``tests/unit/test_options.py`` fails when a
wrapper's default drifts from the core's. Where a framework imposes its own name:

=======================  =====================  ========================  ====================
core                     LangChain              LlamaIndex                CLI (``e2llm ask``)
=======================  =====================  ========================  ====================
``max_new_tokens``       ``max_tokens``         ``max_new_tokens``, also  ``--max-new-tokens``
                                                ``metadata.num_output``
``temperature``          ``temperature``        ``temperature``           ``--temperature``
``top_p`` / ``seed``     ``top_p`` / ``seed``   ``top_p`` / ``seed``      (not exposed)
``stop``                 ``stop`` (``None``:    ``stop`` (``[]``: none)   (not exposed)
                         none)
``checkpoint``,          same names             same names                ``--checkpoint``,
``device``,                                                               ``--device``,
``trust_remote_code``                                                     ``--trust-remote-code``
``top_k``,               compressor: same       ``E2LLM`` and the node    (not exposed)
``score_threshold``      names                  postprocessor: same
``expand_top_k``         ``expand_top_k``       ``expand_top_k``          ``--expand``
``on_overflow``          (pipeline default)     (pipeline default)        ``--on-overflow``
=======================  =====================  ========================  ====================

LlamaIndex's ``metadata.context_window`` is not an option: it is computed from the
decoder's window and the chunk settings of the loaded checkpoint.

Example:
    >>> GenerationConfig(max_new_tokens=32).temperature
    0.0
    >>> option_default(PrefilterOptions, "top_k") is None
    True
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .pipeline import E2LLMPipeline

Autocast = Literal["auto", "bf16", "off"]
"""Precision: bf16 autocast where the hardware runs it fast (``auto``), always, or never."""
AUTOCAST_MODES: tuple[str, ...] = ("auto", "bf16", "off")


def check_autocast(mode: Any) -> Autocast:
    """``mode`` if it is one of :data:`AUTOCAST_MODES`, else a ``ValueError`` naming them."""
    if not isinstance(mode, str) or mode not in AUTOCAST_MODES:
        raise ValueError(
            f"autocast must be one of {', '.join(map(repr, AUTOCAST_MODES))}, got {mode!r} "
            "('auto' is bf16 where the CPU/GPU runs it fast, 'off' is fp32)."
        )
    return mode  # type: ignore[return-value]


OnOverflow = Literal["select", "error"]
"""What to do with documents that need more positions than the decoder's window."""

DEFAULT_EXPAND_TOP_K = 1
"""Chunks shown as raw text by default (chosen on the K sweep, see docs/RESULTS.md)."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _set(options: Any, name: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass (only from ``__post_init__``)."""
    object.__setattr__(options, name, value)


# ---------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class GenerationConfig:
    """Decoding options.

    Attributes:
        max_new_tokens: Upper bound on generated tokens.
        temperature: 0 for greedy decoding, > 0 to sample.
        top_p: Nucleus sampling mass when sampling.
        stop: Strings that end generation (not included in the output).
        seed: Seed for sampling; ``None`` draws from torch's global generator.

    Example:
        >>> GenerationConfig(max_new_tokens=8, stop="\\n").stop
        ('\\n',)
    """

    max_new_tokens: int = field(
        default=256, metadata=_help("Most tokens generated per answer (it may stop earlier).")
    )
    temperature: float = field(default=0.0, metadata=_help("0 decodes greedily; > 0 samples."))
    top_p: float = field(default=1.0, metadata=_help("Nucleus sampling mass, in (0, 1]."))
    stop: Sequence[str] = field(
        default=(), metadata=_help("Strings that end generation (not included in the output).")
    )
    seed: int | None = field(
        default=None, metadata=_help("Sampling seed; None is not reproducible.")
    )

    def __post_init__(self) -> None:
        _set(self, "max_new_tokens", _whole("max_new_tokens", self.max_new_tokens, "256"))
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        _set(self, "temperature", _finite("temperature", self.temperature))
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}.")
        _set(self, "top_p", _finite("top_p", self.top_p))
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        _set(self, "stop", _stops(self.stop))
        if self.seed is not None:
            _set(self, "seed", _whole("seed", self.seed, "0"))


# ---------------------------------------------------------------------- model source
@dataclass(frozen=True)
class ModelOptions:
    """Where the E2LLM model comes from.

    Attributes:
        checkpoint: Checkpoint folder; ``None`` is the shipped one (an untrained adapter,
            with a warning, where the installation ships none).
        device: Torch device; ``None`` picks CUDA when available, else CPU.
        trust_remote_code: Allow the decoder folder's own Python code; ``None`` reads
            ``$E2LLM_TRUST_REMOTE_CODE`` (unset: no).
        autocast: Inference precision of encoder and decoder: ``auto`` (bf16 autocast
            where the CPU has AVX512-BF16/AMX or the GPU bf16, else fp32), ``bf16``, ``off``.

    Example:
        >>> ModelOptions(device="cpu").load()  # the shared pipeline  # doctest: +SKIP
    """

    checkpoint: str | None = field(
        default=None, metadata=_help("E2LLM checkpoint folder; None uses the shipped checkpoint.")
    )
    device: str | None = field(
        default=None,
        metadata=_help("Torch device ('cpu', 'cuda', 'cuda:1'); None picks CUDA if present."),
    )
    trust_remote_code: bool | None = field(
        default=None,
        metadata=_help(
            "Allow the decoder folder's own Python code; None reads $E2LLM_TRUST_REMOTE_CODE "
            "(unset: refused)."
        ),
    )
    autocast: Autocast = field(
        default="auto",
        metadata=_help(
            "Inference precision: 'auto' (bf16 where the CPU/GPU runs it fast, else fp32), "
            "'bf16' or 'off' (fp32)."
        ),
    )

    def __post_init__(self) -> None:
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, str | os.PathLike):
                raise TypeError(
                    f"checkpoint must be a folder path (str or Path) or None, got "
                    f"{type(self.checkpoint).__name__}."
                )
            _set(self, "checkpoint", os.fspath(self.checkpoint))
            if not str(self.checkpoint).strip():
                raise ValueError("checkpoint is an empty path; pass a folder, or None.")
        if self.device is not None:
            _set(self, "device", _device(self.device))
        if self.trust_remote_code is not None and not isinstance(self.trust_remote_code, bool):
            raise TypeError(
                f"trust_remote_code must be True, False or None, got {self.trust_remote_code!r}."
            )
        check_autocast(self.autocast)

    def load(self) -> E2LLMPipeline:
        """The shared pipeline for these options (``core.registry``), loaded on first use."""
        from .registry import get_pipeline

        return get_pipeline(self.checkpoint, self.device, self.trust_remote_code, self.autocast)


def _device(value: Any) -> str:
    import torch

    if not isinstance(value, str | torch.device):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {value!r}.")
    try:
        return str(torch.device(value))
    except RuntimeError as err:
        raise ValueError(
            f"device {value!r} is not a torch device; use 'cpu', 'cuda', 'cuda:1', 'mps', ..."
        ) from err


# ---------------------------------------------------------------------- chunk selection
@dataclass(frozen=True)
class PrefilterOptions:
    """Which chunks to keep, by cosine similarity to the question (the FAISS prefilter).

    Attributes:
        top_k: Keep at most this many chunks, the most similar; ``None``: no limit.
        score_threshold: Keep only chunks at least this similar (in [-1, 1]); ``None``:
            no floor.
    """

    top_k: int | None = field(
        default=None,
        metadata=_help("Keep at most this many chunks, the most similar to the query."),
    )
    score_threshold: float | None = field(
        default=None,
        metadata=_help("Keep only chunks whose cosine similarity to the query is at least this."),
    )

    def __post_init__(self) -> None:
        if self.top_k is not None:
            _set(self, "top_k", _whole("top_k", self.top_k, "8"))
            if self.top_k < 1:
                raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}.")
        if self.score_threshold is not None:
            _set(self, "score_threshold", _finite("score_threshold", self.score_threshold))
            if not -1.0 <= self.score_threshold <= 1.0:
                raise ValueError(
                    f"score_threshold is a cosine similarity in [-1, 1], got {self.score_threshold}."
                )

    @property
    def active(self) -> bool:
        """Whether any chunk can be dropped (``top_k`` or ``score_threshold`` set)."""
        return self.top_k is not None or self.score_threshold is not None


@dataclass(frozen=True)
class ExpansionOptions:
    """How the chunks reach the decoder besides their soft tokens.

    Attributes:
        expand_top_k: Chunks most similar to the question also shown as raw text
            (selective expansion; 0: soft tokens only). ``None`` means the default.
        on_overflow: Documents needing more positions than the decoder's window:
            ``"select"`` answers from the most relevant chunks that fit, ``"error"``
            refuses them before encoding.
    """

    expand_top_k: int | None = field(
        default=DEFAULT_EXPAND_TOP_K,
        metadata=_help(
            "Chunks most similar to the question also shown as raw text (selective "
            f"expansion); 0: soft tokens only, None: the default ({DEFAULT_EXPAND_TOP_K})."
        ),
    )
    on_overflow: OnOverflow = field(
        default="select",
        metadata=_help(
            "Documents too large for the decoder's window: 'select' answers from the chunks "
            "most relevant to the question, 'error' refuses them."
        ),
    )

    def __post_init__(self) -> None:
        if self.expand_top_k is None:
            _set(self, "expand_top_k", DEFAULT_EXPAND_TOP_K)
        check_top_k(self.expand_top_k)
        check_on_overflow(self.on_overflow)


def check_top_k(top_k: Any) -> int:
    """Validate an ``expand_top_k`` value (an int >= 0) and return it."""
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(
            f"expand_top_k must be an int (0 for soft tokens only), got {type(top_k).__name__}."
        )
    if top_k < 0:
        raise ValueError(f"expand_top_k must be >= 0 (0: soft tokens only), got {top_k}.")
    return top_k


def check_on_overflow(value: Any) -> OnOverflow:
    """Validate ``on_overflow``: ``"select"`` (answer from what fits) or ``"error"``."""
    if value == "select" or value == "error":
        return value  # type: ignore[no-any-return]
    raise ValueError(
        f"on_overflow must be 'select' (answer from the chunks most relevant to the question "
        f"that fit the decoder's window) or 'error' (refuse such input), got {value!r}."
    )


# ---------------------------------------------------------------------- field access
def _field(options: type, name: str) -> Any:
    for f in fields(options):
        if f.name == name:
            return f
    raise KeyError(f"{options.__name__} has no option {name!r}.")


def option_default(options: type, name: str) -> Any:
    """The default of option ``name`` of the dataclass ``options``."""
    f = _field(options, name)
    return f.default_factory() if f.default is MISSING else f.default


def option_help(options: type, name: str) -> str:
    """The one-line help text of option ``name`` (for pydantic descriptions and CLI help)."""
    return str(_field(options, name).metadata["help"])


def check_option(options: type, name: str, value: Any) -> Any:
    """``value`` validated as option ``name`` of ``options``, normalised as it would be stored.

    Raises:
        TypeError, ValueError: As the dataclass does for a bad value.

    Example:
        >>> check_option(GenerationConfig, "stop", "END")
        ('END',)
    """
    _field(options, name)
    return getattr(options(**{name: value}), name)


# ---------------------------------------------------------------------- checks
def _whole(name: str, value: Any, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a whole number (int), got {type(value).__name__} {value!r}; pass "
            f"e.g. {name}={example}."
        )
    return int(value)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def _stops(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else stop
    try:
        stops = tuple(stops)
    except TypeError as err:
        raise TypeError(
            f"stop must be a string or a list of strings, got {type(stop).__name__}."
        ) from err
    for s in stops:
        if not isinstance(s, str):
            raise TypeError(f"stop strings must be str, got {type(s).__name__} {s!r}.")
        if not s:
            raise ValueError(
                "stop strings must not be empty: an empty stop string matches at once and "
                "every answer would come back empty. Remove it (stop=[] for no stop strings)."
            )
    return stops
