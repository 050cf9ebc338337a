"""Can a checkpoint read a fact back from its soft tokens? Two probes over the NIAH facts.

Issue 10 asks that soft tokens alone find needles. This separates the two ways that can
fail, on the 16 hand-written paraphrase facts of ``e2llm eval niah --variant paraphrase``
(evaluation data: nothing here trains or tunes on it):

1. **Is the fact in the encoder's vector?** Each fact is planted in the haystack text
   (three random places), chunked as the checkpoint chunks, and the pooled encoder vector
   of the chunk holding it is compared with the pooled vectors of the 16 answers: the
   share of chunks whose nearest answer is their own (``embedding_top1``; chance 1/16).
2. **Does the decoder read it?** Soft tokens only (``expand_top_k=0``), the paraphrased
   question asked over (a) the fact alone, one chunk, and (b) 300 haystack characters
   followed by the fact; the share of answers that contain the answer word
   (``alone_found``, ``in_text_found``).

Usage:
    python benchmarks/probe_soft_reading.py [--checkpoint PATH] [--out results/probe.json]
"""

from __future__ import annotations

import random

import _probe  # benchmarks/_probe.py: run as python benchmarks/<script>.py
import torch

from e2llm_integrations import E2LLMPipeline
from e2llm_integrations.core.encoder import sentence_embeddings
from e2llm_integrations.core.generation import GenerationConfig
from e2llm_integrations.data import load_haystack
from e2llm_integrations.eval.niah import PARAPHRASES


def pooled(pipe: E2LLMPipeline, texts: list[str]) -> torch.Tensor:
    """(n, d_enc) unit vectors: each text's first chunk, pooled as retrieval pools it."""
    corpora = pipe.encode_texts(texts)
    return torch.cat([sentence_embeddings(c.features[:1], c.mask[:1]) for c in corpora])


def embedding_top1(pipe: E2LLMPipeline, hay: str, trials: int, seed: int) -> float:
    answers = pooled(pipe, [n.answer for n in PARAPHRASES])
    rng, hits, total = random.Random(seed), 0, 0
    for i, needle in enumerate(PARAPHRASES):
        for _ in range(trials):
            cut = hay.index(". ", rng.randrange(2000, len(hay) - 4000)) + 2
            before = hay[cut - 2000 : cut]
            text = before + needle.sentence + " " + hay[cut : cut + 2000]
            at = text.index(needle.answer.split()[-1], len(before))
            # The chunk holding the answer word's first character (a small chunk may
            # split the word itself).
            chunk = next(c for c in pipe.chunk([text]) if c.start <= at < c.end)
            sims = pooled(pipe, [chunk.text]) @ answers.T
            hits += int(sims[0].argmax()) == i
            total += 1
    return hits / total


def read_back(pipe: E2LLMPipeline, hay: str) -> dict[str, object]:
    gen = GenerationConfig(max_new_tokens=16)
    found = {"alone": 0.0, "in_text": 0.0}
    answers = []
    for needle in PARAPHRASES:
        for name, text in (
            ("alone", needle.sentence),
            ("in_text", hay[:300] + " " + needle.sentence),
        ):
            reply = pipe.ask([text], needle.question, gen, expand_top_k=0).text.strip()
            found[name] += needle.found(reply)
            answers.append({"setting": name, "answer": needle.answer, "reply": reply})
    n = len(PARAPHRASES)
    return {
        "alone_found": found["alone"] / n,
        "in_text_found": found["in_text"] / n,
        "replies": answers,
    }


def main(argv: list[str] | None = None) -> None:
    ap = _probe.parser(__doc__)
    ap.add_argument("--trials", type=int, default=3, help="haystack placements per fact")
    args = ap.parse_args(argv)
    pipe, start = _probe.load(args)
    hay = load_haystack(args.data_dir)
    result = _probe.record(
        args,
        "probe_soft_reading.py",
        embedding_top1=round(embedding_top1(pipe, hay, args.trials, seed=0), 4),
        **read_back(pipe, hay),
    )
    _probe.finish(args, result, start, hide=("replies",))


if __name__ == "__main__":
    main()
