"""Prompt layout: ``[instruction] <soft chunk tokens> [question]`` in the chat template.

The prompt text is rendered with the decoder's chat template around a marker string,
then split at the marker. The soft tokens are inserted between the two token
sequences as embeddings, so no placeholder token is added to the vocabulary.

A framework hands over one plain prompt instead (a "stuff" chain, a LlamaIndex
template); :func:`split_prompt` is the one rule, used by both integrations, that cuts
it into the context (read as soft tokens) and the question (read as text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARKER = "\u2063E2LLM_CHUNKS\u2063"
RECONSTRUCT_QUESTION = "Repeat the context word for word."

LONG_PROMPT_CHARS = 2000
"""A one-paragraph prompt longer than this is cut at a line break or sentence end too."""

_FENCED = re.compile(r"^(?P<head>.*?)\n-{3,}\n(?P<context>.*)\n-{3,}\n(?P<tail>.*)$", re.DOTALL)
_QUERY = re.compile(r"(?:^|\n)Query:\s*(?P<query>.*?)\s*(?:\nAnswer:.*)?$", re.DOTALL)
_REFINE = re.compile(
    r"The original query is as follows:\s*(?P<query>.*?)\n"
    r"We have provided an existing answer:\s*(?P<answer>.*?)\n",
    re.DOTALL,
)
_SEPARATORS = (r"\n[ \t]*\n\s*", r"\s*\n\s*", r"(?<=[.!?])\s+")
"""Where a prompt may be cut, tried in order: blank line, line break, sentence end."""
_ANSWER_CUE = re.compile(r"\W*(\w+\W*){0,2}:\s*")
"""A trailing cue such as ``Answer:`` or ``Helpful Answer:``; it stays with the question."""


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


@dataclass(frozen=True)
class SplitPrompt:
    """A prompt cut into the context E2LLM compresses and the question it reads as text."""

    context: str
    question: str


def split_prompt(prompt: str, long_chars: int = LONG_PROMPT_CHARS) -> SplitPrompt:
    """Split a plain prompt into context and question.

    The rule, in order:

    1. **Fenced context** (LlamaIndex's QA, tree-summarize and refine templates, and
       prompts shaped like them): the text between the first and the last line of three
       or more dashes is the context, when the text after it asks with ``Query:`` (the
       question, without a trailing ``Answer:`` label) or the text before it is the
       refine preamble (the question: the original query and the existing answer).
    2. **Paragraphs**: the last paragraph is the question and everything before it is
       the context; a trailing answer cue on its own (``Answer:``, ``Helpful Answer:``)
       stays with the paragraph before it.
    3. **Long prompts** (over ``long_chars`` characters) of one paragraph: the same at
       the last line break, else at the last sentence end.
    4. Otherwise the whole prompt is the question and there is no context.

    Args:
        prompt: The prompt text.
        long_chars: Length from which rule 3 applies (0: always).

    Example:
        >>> split_prompt("Alice was born in Paris.\\n\\nWhere was Alice born?")
        SplitPrompt(context='Alice was born in Paris.', question='Where was Alice born?')
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}.")
    fenced = _split_fenced(prompt)
    if fenced is not None:
        return fenced
    body = prompt.strip()
    separators = _SEPARATORS if len(body) > long_chars else _SEPARATORS[:1]
    for pattern in separators:
        for match in reversed(list(re.finditer(pattern, body))):
            context, question = body[: match.start()].rstrip(), body[match.end() :]
            if context and not _ANSWER_CUE.fullmatch(question):
                return SplitPrompt(context, question.strip())
    return SplitPrompt("", body)


def split_stuffed_prompt(text: str) -> tuple[str, str] | None:
    """Split a long prompt into ``(context, question)``, or ``None`` if it cannot be cut.

    The rule of :func:`split_prompt` at any length:
    a fenced template's context and query, else the last paragraph (else line, else
    sentence) is the question; a trailing answer cue like ``Answer:`` stays with it.

    Example:
        >>> split_stuffed_prompt("Long context.\\n\\nQuestion: Who?\\nAnswer:")
        ('Long context.', 'Question: Who?\\nAnswer:')
    """
    split = split_prompt(text, long_chars=0)
    return (split.context, split.question) if split.context else None


def _split_fenced(prompt: str) -> SplitPrompt | None:
    fenced = _FENCED.match(prompt)
    if fenced is None:
        return None
    context = fenced["context"].strip()
    refine = _REFINE.search(fenced["head"])
    if refine is not None:
        question = (
            f"{refine['query'].strip()}\n(An earlier answer was: {refine['answer'].strip()} "
            "Improve it only if the context helps.)"
        )
        return SplitPrompt(context, question)
    query = _QUERY.search(fenced["tail"])
    if query is not None and query["query"].strip():
        return SplitPrompt(context, query["query"].strip())
    return None
