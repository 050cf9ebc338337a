"""Pydantic fields of the framework wrappers, derived from the core option dataclasses.

The LangChain and LlamaIndex classes declare each E2LLM option with :func:`core_field`
(the core default and help text) and check it with :func:`core_validator` (the core
rule and its message), so defaults and validation live in
:mod:`e2llm_integrations.core.options` only. The option groups both frameworks share
(where the model comes from, decoding, expansion, the prefilter, the embedding model)
are mixins here. Both use pydantic 2 (LlamaIndex's ``bridge.pydantic`` is pydantic).

Example:
    >>> class Wrapper(BaseModel):  # doctest: +SKIP
    ...     max_tokens: int = core_field(GenerationConfig, "max_new_tokens")
    ...     _check = core_validator(GenerationConfig, max_tokens="max_new_tokens")
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from .core.backend import BackendName, BackendOptions, backend_pipeline
from .core.corpus import EncodedCorpus
from .core.options import (
    Autocast,
    ExpansionOptions,
    GenerationConfig,
    ModelOptions,
    PrefilterOptions,
    check_option,
    option_default,
    option_help,
)
from .core.pipeline import E2LLMPipeline
from .core.registry import get_pipeline
from .retrieval.embeddings import DEFAULT_EMBED_MODEL, SentenceEmbedder
from .retrieval.faiss_index import ChunkPrefilter

GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "stop", "seed")
"""The ``GenerationConfig`` options, each a decoding field of the wrappers."""


def core_field(options: type, name: str, **kwargs: Any) -> Any:
    """A pydantic ``Field`` with the default and description of option ``options.name``.

    ``kwargs`` go to ``Field``; a ``default`` or ``default_factory`` there replaces the
    core default by the framework's spelling of the same value (``None`` or ``[]`` for no
    stop strings), which ``tests/unit/test_options.py`` checks is equivalent.
    """
    if "default" not in kwargs and "default_factory" not in kwargs:
        kwargs["default"] = option_default(options, name)
    return Field(description=option_help(options, name), **kwargs)


def core_validator(options: type, *same: str, **renamed: str) -> Any:
    """A before-validator that checks wrapper fields with the core rules.

    Args:
        options: The core options dataclass.
        *same: Fields named as in the core.
        **renamed: ``wrapper_name="core_name"`` for fields the framework names itself.

    Returns:
        A ``field_validator`` to assign in the class body. A good value is kept as
        given (pydantic then applies the field's type); a bad one raises what the core
        raises: a ``TypeError`` as is, a ``ValueError`` inside pydantic's
        ``ValidationError`` (itself a ``ValueError``), with the core's message.
    """
    names = {**{n: n for n in same}, **renamed}

    def check(cls: Any, value: Any, info: ValidationInfo) -> Any:
        check_option(options, names[str(info.field_name)], value)
        return value

    return field_validator(*names, mode="before")(check)


def generation_config(
    owner: Any, fields: Mapping[str, str], overrides: Mapping[str, Any]
) -> GenerationConfig:
    """The core ``GenerationConfig`` of a wrapper's decoding fields, a call's overrides winning.

    Args:
        owner: The wrapper instance.
        fields: ``{wrapper field: GenerationConfig option}``.
        overrides: Per-call values by wrapper field name (missing ones: the instance's).
    """
    values = {core: overrides.get(name, getattr(owner, name)) for name, core in fields.items()}
    values["stop"] = tuple(values.get("stop") or ())  # None or [] both mean no stop strings
    return GenerationConfig(**values)


def check_call_options(
    owner: Any, options: Mapping[str, Any], accepted: Collection[str], model_name: str
) -> None:
    """Refuse per-call keyword arguments ``owner`` does not take, and a switch of model.

    Raises:
        TypeError: An option not in ``accepted``.
        ValueError: ``model=`` names another model than ``model_name``.
    """
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"{type(owner).__name__} got unsupported call option(s) {unknown}; it accepts "
            f"{sorted(set(accepted) - {'stream'})} (no tools or structured output)."
        )
    model = options.get("model")
    if model and model != model_name:
        raise ValueError(
            f"{type(owner).__name__} cannot switch models per call (got model={model!r}); "
            "build another instance with checkpoint=... instead."
        )


class _Decoding(BaseModel):
    """Decoding fields that make a ``GenerationConfig`` (the two spellings below)."""

    generation_fields: ClassVar[Mapping[str, str]] = {key: key for key in GENERATION_KEYS}
    """``{wrapper field: GenerationConfig option}``."""

    def decoding(self, overrides: Mapping[str, Any]) -> GenerationConfig:
        """The fields' ``GenerationConfig``, ``overrides`` (by field name) winning."""
        return generation_config(self, self.generation_fields, overrides)


class DecodingFields(_Decoding):
    """``GenerationConfig`` as fields under the core names (LlamaIndex); ``stop=[]``: none."""

    max_new_tokens: int = core_field(GenerationConfig, "max_new_tokens")
    temperature: float = core_field(GenerationConfig, "temperature")
    top_p: float = core_field(GenerationConfig, "top_p")
    seed: int | None = core_field(GenerationConfig, "seed")
    stop: list[str] = core_field(GenerationConfig, "stop", default_factory=list)
    _check_generation = core_validator(GenerationConfig, *GENERATION_KEYS)


class ChatDecodingFields(_Decoding):
    """``GenerationConfig`` as fields under LangChain's names: ``max_tokens`` is
    ``max_new_tokens``, and ``stop=None`` means no stop strings."""

    generation_fields: ClassVar[Mapping[str, str]] = {
        "max_tokens": "max_new_tokens",
        **{key: key for key in GENERATION_KEYS if key != "max_new_tokens"},
    }
    """``{wrapper field: GenerationConfig option}``."""

    temperature: float = core_field(GenerationConfig, "temperature")
    max_tokens: int = core_field(GenerationConfig, "max_new_tokens")
    top_p: float = core_field(GenerationConfig, "top_p")
    stop: list[str] | None = core_field(GenerationConfig, "stop", default=None)
    seed: int | None = core_field(GenerationConfig, "seed")
    _check_generation = core_validator(GenerationConfig, **generation_fields)


class ExpansionFields(BaseModel):
    """``ExpansionOptions.expand_top_k`` as a field: chunks also shown as raw text."""

    expand_top_k: int | None = core_field(ExpansionOptions, "expand_top_k")
    _check_expansion = core_validator(ExpansionOptions, "expand_top_k")


class ModelSourceFields(BaseModel):
    """Where the model comes from and where its decoder runs: ``ModelOptions`` and
    ``BackendOptions`` as fields. :meth:`load_pipeline` gets the pipeline they name."""

    checkpoint: str | None = core_field(ModelOptions, "checkpoint")
    device: str | None = core_field(ModelOptions, "device")
    trust_remote_code: bool | None = core_field(ModelOptions, "trust_remote_code")
    autocast: Autocast = core_field(ModelOptions, "autocast")
    _check_model_options = core_validator(
        ModelOptions, "checkpoint", "device", "trust_remote_code", "autocast"
    )
    backend: BackendName = core_field(BackendOptions, "backend")
    base_url: str | None = core_field(BackendOptions, "base_url")
    _check_backend = core_validator(BackendOptions, "backend")

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> Any:
        """An instance over ``checkpoint`` (default: the shipped one); weights load lazily.

        Example:
            >>> chat = E2LLMChat.from_pretrained("runs/default/checkpoint-last")  # doctest: +SKIP
        """
        return cls(checkpoint=None if checkpoint is None else str(checkpoint), **kwargs)

    def model_label(self, prefix: str) -> str:
        """``prefix:`` plus the checkpoint folder's name (``default``: the shipped one)."""
        return f"{prefix}:{Path(self.checkpoint).name if self.checkpoint else 'default'}"

    @property
    def backend_options(self) -> BackendOptions:
        """Where the decoder runs (``backend``, ``base_url``; see ``docs/SERVING.md``)."""
        return BackendOptions(backend=self.backend, base_url=self.base_url)

    @model_validator(mode="after")
    def _check_backend_options(self) -> Any:
        self.backend_options  # noqa: B018  (raises for base_url without backend="vllm")
        return self

    def load_pipeline(self) -> E2LLMPipeline:
        """The shared pipeline for these options (core registry), loaded on first use; with
        a remote decoder (vLLM) a pipeline of its own."""
        options = self.backend_options
        if options.remote:
            return backend_pipeline(
                self.checkpoint, self.device, self.trust_remote_code, options, self.autocast
            )
        return get_pipeline(self.checkpoint, self.device, self.trust_remote_code, self.autocast)


class PipelineFields(ModelSourceFields):
    """The model options as fields; ``pipeline=`` (a loaded one) wins over them. The
    pipeline is then the ``pipeline`` property (LlamaIndex's wrappers)."""

    _pipeline: E2LLMPipeline | None = PrivateAttr(default=None)

    def __init__(self, pipeline: E2LLMPipeline | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pipeline = pipeline

    @classmethod
    def from_pipeline(cls, pipeline: E2LLMPipeline, **kwargs: Any) -> Self:
        """Wrap an already-loaded pipeline (``kwargs`` set the other fields)."""
        wrapper = cls(**kwargs)
        wrapper._pipeline = pipeline
        return wrapper

    @property
    def pipeline(self) -> E2LLMPipeline:
        """The pipeline, loaded (and shared through the core registry) on first use."""
        if self._pipeline is None:
            self._pipeline = self.load_pipeline()
        return self._pipeline


class PrefilterFields(BaseModel):
    """``PrefilterOptions`` as fields: keep the chunks most similar to the question."""

    top_k: int | None = core_field(PrefilterOptions, "top_k")
    score_threshold: float | None = core_field(PrefilterOptions, "score_threshold")
    _check_prefilter_options = core_validator(PrefilterOptions, "top_k", "score_threshold")

    @property
    def prefilter_options(self) -> PrefilterOptions:
        return PrefilterOptions(self.top_k, self.score_threshold)

    @property
    def chunk_prefilter(self) -> ChunkPrefilter | None:
        """The FAISS chunk prefilter, or ``None`` when every chunk is kept."""
        return ChunkPrefilter.from_options(self.prefilter_options)

    def prefilter_corpus(
        self, pipeline: E2LLMPipeline, corpus: EncodedCorpus, question: str
    ) -> EncodedCorpus:
        """``corpus`` reduced by the ``top_k`` / ``score_threshold`` prefilter, if one is set."""
        prefilter = self.chunk_prefilter
        if not len(corpus) or prefilter is None:
            return corpus
        return prefilter.filter(pipeline, corpus, question)[0]


class EmbedderFields(BaseModel):
    """A sentence-transformers model (``retrieval.embeddings.SentenceEmbedder``) as fields:
    the bundled MiniLM by default, loaded on first use and shared."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(
        default=DEFAULT_EMBED_MODEL,
        description="Bundled short name, local sentence-transformers folder or hub id.",
    )
    device: str | None = Field(
        default=None, description="Torch device; None lets sentence-transformers choose."
    )
    normalize: bool = Field(
        default=True, description="L2-normalise embeddings (cosine = dot product)."
    )
    _model: SentenceEmbedder | None = PrivateAttr(default=None)

    @property
    def embedder(self) -> SentenceEmbedder:
        """The embedder (its model loads on first use)."""
        if self._model is None:
            self._model = SentenceEmbedder(self.model_name, self.device)
        return self._model
