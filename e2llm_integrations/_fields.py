"""Pydantic fields of the framework wrappers, derived from the core option dataclasses.

The LangChain and LlamaIndex classes declare each E2LLM option with :func:`core_field`
(the core default and help text) and check it with :func:`core_validator` (the core
rule and its message), so defaults and validation live in
:mod:`e2llm_integrations.core.options` only. Both frameworks use pydantic 2.

Example:
    >>> class Wrapper(BaseModel):  # doctest: +SKIP
    ...     max_tokens: int = core_field(GenerationConfig, "max_new_tokens")
    ...     _check = core_validator(GenerationConfig, max_tokens="max_new_tokens")
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from .core.options import check_option, option_default, option_help


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
