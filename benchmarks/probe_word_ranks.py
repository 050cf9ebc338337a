"""Which words do a chunk's soft tokens point at? Ranks of its words in the decoder's vocabulary.

Issue 10 asks that soft tokens alone find needles, and a needle's answer is a name or a rare
word. This asks whether the soft tokens even sit near such words in the decoder's input
space, the words a decoder could copy: for each validation-split reconstruction chunk
(training data's split, never the held-out evaluation texts), every row of the decoder's
input-embedding table is scored by its best cosine with the chunk's soft tokens, and each of
the chunk's own decoder tokens gets its rank among the whole vocabulary (0 = nearest).

Reported for ``all`` of a chunk's distinct tokens and for its ``rare`` ones: alphabetic
tokens of at least 4 letters that occur in no other probed chunk (names, places, unusual
words: what a needle's answer looks like). ``median`` rank and the share ranked under 10,
100 and 1,000 (a vocabulary of 49,152 tokens for SmolLM2; chance median about half of it).

Usage:
    python benchmarks/probe_word_ranks.py [--checkpoint PATH] [--n 300] [--out results/probe/ranks.json]
"""

from __future__ import annotations

import re
from collections import Counter

import _probe  # benchmarks/_probe.py: run as python benchmarks/<script>.py
import torch

from e2llm_integrations import E2LLMPipeline

RARE = re.compile(r"\s?[A-Za-z]{4,}")


def summary(ranks: list[int]) -> dict[str, float]:
    r = torch.tensor(ranks, dtype=torch.float64)
    out = {"words": len(ranks), "median": float(r.median()) if ranks else float("nan")}
    for top in (10, 100, 1000):
        out[f"under_{top}"] = round(float((r < top).double().mean()), 4) if ranks else float("nan")
    return out


@torch.no_grad()
def word_ranks(pipe: E2LLMPipeline, texts: list[str]) -> dict[str, dict[str, float]]:
    model = pipe.model
    tok = model.tokenizer
    table = model.decoder.get_input_embeddings().weight.detach().float()
    table = torch.nn.functional.normalize(table, dim=-1)
    ids = [set(x) for x in tok(texts, add_special_tokens=False)["input_ids"]]
    df = Counter(t for chunk in ids for t in chunk)
    ranks: dict[str, list[int]] = {"all": [], "rare": []}
    for corpus, words in zip(pipe.encode_texts(texts), ids, strict=True):
        soft = model.soft_tokens(corpus.features[:1], corpus.mask[:1]).float()
        best = (torch.nn.functional.normalize(soft, dim=-1) @ table.T).max(dim=0).values
        rank = torch.empty_like(best, dtype=torch.long)
        rank[best.argsort(descending=True)] = torch.arange(best.numel())
        for word in words:
            ranks["all"].append(int(rank[word]))
            if df[word] == 1 and RARE.fullmatch(tok.decode([word])):
                ranks["rare"].append(int(rank[word]))
    return {name: summary(values) for name, values in ranks.items()}


def main(argv: list[str] | None = None) -> None:
    ap = _probe.parser(__doc__)
    ap.add_argument("--n", type=int, default=300, help="validation chunks")
    args = ap.parse_args(argv)
    pipe, start = _probe.load(args)
    texts = _probe.val_chunks(pipe, args.data_dir, args.n)
    result = _probe.record(
        args, "probe_word_ranks.py", chunks=len(texts), ranks=word_ranks(pipe, texts)
    )
    _probe.finish(args, result, start)


if __name__ == "__main__":
    main()
