"""Configuration dataclasses for every E2LLM component.

Each component has one stdlib dataclass, validated in ``__post_init__`` with errors
that say how to fix the value. ``E2LLMConfig`` groups them and round-trips through
JSON with a ``format_version``; unknown keys are refused so that a typo never
silently falls back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

FORMAT_VERSION = 1
"""Version of the checkpoint/config format written by this library."""

Pooling = Literal["mean", "cls"]
AdapterKind = Literal["mlp", "pma"]

TRUST_REMOTE_CODE_ENV = "E2LLM_TRUST_REMOTE_CODE"
"""Environment variable that allows base models' own Python code (``1``) when no argument says."""

DEFAULT_ENCODER = "all-minilm-l6-v2"
DEFAULT_DECODER = "smollm2-135m-instruct"
DEFAULT_INSTRUCTION = (
    "You are given a long context as compressed chunks. "
    "Answer the question using the context. Reply with a short answer only."
)

T = TypeVar("T")


def _positive(name: str, value: int | float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} expects a mapping, got {type(data).__name__}.")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"Unknown {cls.__name__} option(s) {unknown}; valid options are {sorted(known)}."
        )
    return cls(**data)


@dataclass
class ChunkingConfig:
    """How documents are cut into chunks before encoding.

    Attributes:
        chunk_tokens: Maximum encoder tokens per chunk (special tokens excluded).
        overlap_tokens: Tokens repeated between consecutive chunks of a document.
        respect_boundaries: Cut back to the last sentence end or line break in a window.
    """

    chunk_tokens: int = 64
    overlap_tokens: int = 0
    respect_boundaries: bool = True

    def __post_init__(self) -> None:
        _positive("chunk_tokens", self.chunk_tokens)
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens must be in [0, chunk_tokens={self.chunk_tokens}), "
                f"got {self.overlap_tokens}."
            )


@dataclass
class LoraSettings:
    """LoRA hyper-parameters (a subset of ``peft.LoraConfig``).

    Attributes:
        r: Rank of the update matrices.
        alpha: Scaling numerator (``alpha / r``).
        dropout: Dropout on the LoRA path.
        target_modules: Module names to wrap; ``None`` lets peft pick per architecture.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        _positive("lora r", self.r)
        _positive("lora alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout}.")


@dataclass
class EncoderConfig:
    """The chunk encoder.

    Attributes:
        name_or_path: Bundled short name, hub id or local folder of an HF encoder.
        pooling: ``mean`` or ``cls`` pooling of token states.
        tokens_per_chunk: Soft tokens ``k`` per chunk (k windows pooled, or k PMA queries).
        max_length: Encoder context in tokens, special tokens included.
        batch_size: Chunks encoded per forward pass.
        lora: LoRA on the encoder; ``None`` keeps it frozen (embeddings can be cached).
    """

    name_or_path: str = DEFAULT_ENCODER
    pooling: Pooling = "mean"
    tokens_per_chunk: int = 1
    max_length: int = 256
    batch_size: int = 32
    lora: LoraSettings | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = _from_dict(LoraSettings, self.lora)
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}.")
        _positive("tokens_per_chunk", self.tokens_per_chunk)
        _positive("max_length", self.max_length)
        _positive("batch_size", self.batch_size)


@dataclass
class AdapterConfig:
    """Maps encoder features to soft tokens in the decoder's embedding space.

    Attributes:
        kind: ``mlp`` (2-layer GELU MLP per pooled vector) or ``pma`` (k learned
            queries attending over the chunk's token states).
        hidden_mult: Hidden width of the MLP as a multiple of the decoder width.
        num_heads: Attention heads for ``pma``.
        input_dim: Encoder width; filled in from the encoder when the model is built.
        output_dim: Decoder width; filled in from the decoder when the model is built.
    """

    kind: AdapterKind = "mlp"
    hidden_mult: int = 2
    num_heads: int = 4
    input_dim: int | None = None
    output_dim: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "pma"):
            raise ValueError(f"adapter kind must be 'mlp' or 'pma', got {self.kind!r}.")
        _positive("hidden_mult", self.hidden_mult)
        _positive("num_heads", self.num_heads)


@dataclass
class DecoderConfig:
    """The decoder-only LLM.

    Attributes:
        name_or_path: Bundled short name, hub id or local folder of an HF causal LM.
        lora: LoRA on the decoder; ``None`` keeps the decoder frozen.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (``auto``: bf16 on CUDA, fp32 on CPU).
        trust_remote_code: The decoder folder's own Python code (``auto_map``) is wanted.
            Only a request: loading refuses it unless the caller allows remote code
            (``trust_remote_code=True`` or ``E2LLM_TRUST_REMOTE_CODE=1``, see
            :func:`allow_remote_code`).
    """

    name_or_path: str = DEFAULT_DECODER
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = _from_dict(LoraSettings, self.lora)
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"dtype must be one of auto/float32/bfloat16/float16, got {self.dtype!r}."
            )


@dataclass
class E2LLMConfig:
    """Everything needed to rebuild an E2LLM model around its base models.

    Example:
        >>> cfg = E2LLMConfig(chunking=ChunkingConfig(chunk_tokens=128))
        >>> E2LLMConfig.from_json(cfg.to_json()) == cfg
        True
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    instruction: str = DEFAULT_INSTRUCTION
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name, cls in (
            ("encoder", EncoderConfig),
            ("adapter", AdapterConfig),
            ("decoder", DecoderConfig),
            ("chunking", ChunkingConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value))
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"Unsupported E2LLM config format_version {self.format_version}; this version of "
                f"e2llm-integrations reads format {FORMAT_VERSION}. Upgrade the package or re-export "
                "the checkpoint."
            )
        if self.chunking.chunk_tokens + 2 > self.encoder.max_length:
            raise ValueError(
                f"chunking.chunk_tokens={self.chunking.chunk_tokens} does not fit the encoder's "
                f"max_length={self.encoder.max_length} (2 positions go to special tokens); lower "
                "chunk_tokens."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> E2LLMConfig:
        return _from_dict(cls, dict(data))

    @classmethod
    def from_json(cls, text: str) -> E2LLMConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"E2LLM config is not valid JSON ({err}); the file is corrupt."
            ) from err
        return cls.from_dict(data)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def allow_remote_code(value: bool | None = None) -> bool:
    """The caller's decision on running base models' own Python code (``trust_remote_code``).

    An explicit ``value`` wins; ``None`` reads ``$E2LLM_TRUST_REMOTE_CODE`` (``1``/``0``);
    unset means no. A checkpoint or config can only request remote code, never allow it.
    """
    if value is not None:
        if not isinstance(value, bool):
            raise TypeError(f"trust_remote_code must be True, False or None, got {value!r}.")
        return value
    raw = os.environ.get(TRUST_REMOTE_CODE_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{TRUST_REMOTE_CODE_ENV}={raw!r} is not understood; set it to 1 (allow) or 0 (refuse)."
    )


def remote_code_refusal(where: str, name: str) -> str:
    """The message for a checkpoint or config that asks for remote code the caller did not allow."""
    return (
        f"{where} asks to run the Python code shipped with its decoder {name!r} "
        "(trust_remote_code=true). That code is refused unless you allow it: inspect it, then "
        "pass trust_remote_code=True (E2LLMPipeline.from_pretrained / load_checkpoint, or "
        f"`e2llm ask --trust-remote-code`) or set {TRUST_REMOTE_CODE_ENV}=1."
    )


def with_remote_code(config: E2LLMConfig, allowed: bool, where: str) -> E2LLMConfig:
    """``config`` to load with, its ``trust_remote_code`` set to the caller's decision.

    Raises:
        ValueError: ``config`` asks for remote code that the caller did not allow.
    """
    requested = config.decoder.trust_remote_code
    if requested and not allowed:
        raise ValueError(remote_code_refusal(where, config.decoder.name_or_path))
    if requested == allowed:
        return config
    loading = copy.deepcopy(config)
    loading.decoder.trust_remote_code = allowed
    return loading
