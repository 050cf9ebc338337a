"""Prompt layout: ``[instruction] <soft chunk tokens> [question]`` in the chat template.

The prompt text is rendered with the decoder's chat template around a marker string,
then split at the marker. The soft tokens are inserted between the two token
sequences as embeddings, so no placeholder token is added to the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARKER = "\u2063E2LLM_CHUNKS\u2063"
RECONSTRUCT_QUESTION = "Repeat the context word for word."


@dataclass
class PromptParts:
    """Token ids before and after the soft tokens."""

    prefix_ids: list[int]
    suffix_ids: list[int]

    def __len__(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)


def user_turn(instruction: str, question: str, excerpts: Sequence[str] = ()) -> str:
    """The user message; ``excerpts`` are raw-text chunks shown after the soft context."""
    shown = "".join(f"\n\nExcerpt:\n{e}" for e in excerpts)
    return f"{instruction}\n\nContext:\n{MARKER}{shown}\n\nQuestion: {question}"


def build_prompt(
    tokenizer: Any,
    question: str,
    instruction: str,
    system: str | None = None,
    history: Sequence[dict[str, str]] = (),
    excerpts: Sequence[str] = (),
) -> PromptParts:
    """Tokenize the prompt around the chunk marker.

    Args:
        tokenizer: The decoder's tokenizer.
        question: The user's question (the last user turn).
        instruction: Text placed before the context.
        system: Optional system message.
        history: Earlier ``{"role", "content"}`` turns, oldest first.
        excerpts: Raw-text chunks placed after the soft tokens (selective expansion).
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}.")
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(history)
    messages.append({"role": "user", "content": user_turn(instruction, question, excerpts)})
    before, after = render_chat(tokenizer, messages).split(MARKER)
    prefix = tokenizer(before, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and not getattr(tokenizer, "chat_template", None):
        prefix = [tokenizer.bos_token_id, *prefix]
    suffix = tokenizer(after, add_special_tokens=False)["input_ids"]
    return PromptParts(list(prefix), list(suffix))


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """Messages as prompt text, through the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        )
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"
