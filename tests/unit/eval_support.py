"""Fake evaluation data in the format `e2llm data prepare` writes (tiny, made here)."""

from __future__ import annotations

import json
from pathlib import Path

_VOCABULARY = (
    "startup founders often learn that growth matters more than ideas and that users "
    "tell you what to build if you listen carefully to them every week"
)
WORDS = _VOCABULARY.split()


def essay(n_sentences: int, seed: int = 0) -> str:
    """Deterministic essay-like text with sentence ends and paragraph breaks."""
    out = []
    for i in range(n_sentences):
        words = [WORDS[(i * 7 + j * 3 + seed) % len(WORDS)] for j in range(8 + i % 5)]
        out.append(" ".join(words).capitalize() + ".")
        if i % 6 == 5:
            out.append("\n\n")
    return " ".join(out).replace(" \n\n ", "\n\n")


def squad_article(a: int, split: str) -> dict:
    paragraphs = [f"Article {a} paragraph {p}. The river of town {a}-{p} is called R{a}x{p}. "
                  + essay(6, seed=a + p) for p in range(5)]  # fmt: skip
    questions = [
        {"id": f"s{a}-{p}", "question": f"What is the river of town {a}-{p} called?",
         "answers": [f"R{a}x{p}"], "paragraph_index": p}
        for p in range(5)
    ]  # fmt: skip
    return {"article_id": f"a{a}", "title": f"Article {a}", "paragraphs": paragraphs,
            "questions": questions, "split": split}  # fmt: skip


def hotpot_question(q: int, split: str) -> dict:
    paragraphs = [
        {"title": f"T{q}-{p}", "text": f"Entity {q}-{p} was born in City{q}{p}. " + essay(3, q + p),
         "is_gold": p in (2, 5)}
        for p in range(10)
    ]  # fmt: skip
    return {"id": f"h{q}", "question": f"Where was entity {q}-2 born?", "answer": f"City{q}2",
            "paragraphs": paragraphs, "split": split}  # fmt: skip


def write_data(root: Path) -> Path:
    """A data folder with haystack.txt, squad.jsonl and hotpotqa.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "haystack.txt").write_text(essay(400), encoding="utf-8")
    squad = [squad_article(a, "test" if a < 4 else "train") for a in range(6)]
    hotpot = [hotpot_question(q, "test" if q < 8 else "train") for q in range(10)]
    for name, records in (("squad.jsonl", squad), ("hotpotqa.jsonl", hotpot)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return root
