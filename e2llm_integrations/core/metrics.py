"""Answer scoring with LongBench/SQuAD normalisation: F1, exact match and containment."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def best_score(prediction: str, truths: Sequence[str]) -> tuple[float, float]:
    """(F1, EM) of ``prediction`` against the best-matching reference answer.

    Example:
        >>> best_score("The Eiffel Tower", ["eiffel tower", "tower"])
        (1.0, 1.0)
    """
    if not truths:
        raise ValueError("best_score needs at least one reference answer.")
    return max(f1_score(prediction, t) for t in truths), max(
        exact_match(prediction, t) for t in truths
    )


def answer_contained(prediction: str, truths: Sequence[str]) -> float:
    """1.0 when a reference answer appears in ``prediction`` as whole words (normalised).

    F1 and EM punish a verbose reply that holds the right answer; this does not, so it
    compares a decoder trained for short answers fairly with one that talks around them.

    Example:
        >>> answer_contained("It was built by the Eiffel company.", ["Eiffel"])
        1.0
    """
    if not truths:
        raise ValueError("answer_contained needs at least one reference answer.")
    words = f" {normalize_answer(prediction)} "
    return float(any(f" {t} " in words for t in map(normalize_answer, truths) if t))
