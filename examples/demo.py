"""Main job: answer held-out questions over one long SQuAD article with the shipped model.

Run with ``make demo`` (sets up, prepares the data, then runs this script), or
``python examples/demo.py --data-dir data``.
"""

from __future__ import annotations

import argparse
import time

from e2llm_integrations import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.metrics import best_score
from e2llm_integrations.data import load_squad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()

    articles = load_squad(args.data_dir, "test")
    article = max(articles, key=lambda a: sum(len(p) for p in a["paragraphs"]))
    text = "\n\n".join(article["paragraphs"])

    pipe = E2LLMPipeline.from_pretrained(args.checkpoint)
    start = time.perf_counter()
    corpus = pipe.encode([text])
    encode_s = time.perf_counter() - start
    print(
        f"Article '{article['title']}' (held-out test split): {corpus.total_context_tokens} decoder "
        f"tokens -> {len(corpus)} chunks, encoded in {encode_s:.1f}s\n"
    )
    gen = GenerationConfig(max_new_tokens=24)
    for q in article["questions"][: args.questions]:
        start = time.perf_counter()
        result = pipe.ask(corpus, q["question"], gen)
        f1, _ = best_score(result.text, q["answers"])
        print(f"Q: {q['question']}\nA: {result.text.strip()}\n   gold: {q['answers'][0]!r}  F1={f1:.2f}  "
              f"({time.perf_counter() - start:.2f}s, {result.usage.input_positions} decoder positions "
              f"for {result.usage.context_tokens} context tokens)\n")


if __name__ == "__main__":
    main()
