"""Pydantic fields of the framework wrappers, derived from the core option dataclasses.

The LangChain and LlamaIndex classes declare each E2LLM option with :func:`core_field`
(the core default and help text) and check it with :func:`core_validator` (the core
rule and its message), so defaults and validation live in
:mod:`e2llm_integrations.core.options` only. The option groups both frameworks share
(where the model comes from, the prefilter) are mixins here. Both use pydantic 2.

Example:
    >>> class Wrapper(BaseModel):  # doctest: +SKIP
    ...     max_tokens: int = core_field(GenerationConfig, "max_new_tokens")
    ...     _check = core_validator(GenerationConfig, max_tokens="max_new_tokens")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from .core.backend import BackendName, BackendOptions, backend_pipeline
from .core.options import (
    Autocast,
    GenerationConfig,
    ModelOptions,
    PrefilterOptions,
    check_option,
    option_default,
    option_help,
)
from .core.pipeline import E2LLMPipeline
from .core.registry import get_pipeline


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


class PrefilterFields(BaseModel):
    """``PrefilterOptions`` as fields: keep the chunks most similar to the question."""

    top_k: int | None = core_field(PrefilterOptions, "top_k")
    score_threshold: float | None = core_field(PrefilterOptions, "score_threshold")
    _check_prefilter_options = core_validator(PrefilterOptions, "top_k", "score_threshold")

    @property
    def prefilter_options(self) -> PrefilterOptions:
        return PrefilterOptions(self.top_k, self.score_threshold)
