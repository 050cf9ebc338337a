"""How much does the decoder learn from a chunk's soft token? Reconstruction loss three ways.

Issue 10 asks that soft tokens alone find needles; ``probe_soft_reading.py`` shows the
encoder's vector holds the fact while the decoder reads none back. This asks the question
underneath, on validation-split reconstruction paragraphs (training data's split, never the
held-out evaluation texts): the teacher-forced loss of reconstructing a chunk (the training
objective, ``RECONSTRUCT_QUESTION``) when the decoder is given

* ``own``: the chunk's own soft token(s);
* ``shuffled``: the soft token(s) of another chunk (a derangement of the same chunks);
* ``none``: no soft token at all.

``gain = shuffled - own`` (nats per target token) is what the soft token tells the decoder
about *this* chunk beyond what any soft token tells it about chunks in general; ``own`` close
to ``shuffled`` means the decoder reads topic and style, not words.

Usage:
    python benchmarks/probe_soft_gain.py [--checkpoint PATH] [--n 96] [--out results/probe/gain.json]
"""

from __future__ import annotations

import _probe  # benchmarks/_probe.py: run as python benchmarks/<script>.py
import torch

from e2llm_integrations import E2LLMPipeline
from e2llm_integrations.core.model import TrainExample
from e2llm_integrations.core.prompt import RECONSTRUCT_QUESTION


@torch.no_grad()
def losses(pipe: E2LLMPipeline, texts: list[str], max_target: int) -> dict[str, float]:
    model = pipe.model
    tok = model.tokenizer
    corpora = pipe.encode_texts(texts)
    prompt = model.prompt(RECONSTRUCT_QUESTION)
    targets = [tok(t, add_special_tokens=False)["input_ids"][:max_target] for t in texts]
    n = len(texts)
    shift = [(i + 1 + n // 2) % n for i in range(n)]  # a derangement: no chunk keeps its own
    per_chunk: dict[str, torch.Tensor] = {}
    for name in ("own", "shuffled", "none"):
        values = []
        for i in range(n):
            src = corpora[shift[i] if name == "shuffled" else i]
            feats, mask = src.features[:1], src.mask[:1]
            if name == "none":
                feats, mask = feats[:0], mask[:0]
            values.append(float(model([TrainExample(feats, mask, prompt, targets[i])])))
        per_chunk[name] = torch.tensor(values, dtype=torch.float64)
    weights = torch.tensor([len(t) for t in targets], dtype=torch.float64)
    out = {k: float((v * weights).sum() / weights.sum()) for k, v in per_chunk.items()}
    out["gain"] = out["shuffled"] - out["own"]
    gains = per_chunk["shuffled"] - per_chunk["own"]  # per chunk, unweighted
    out["gain_stderr"] = float(gains.std() / n**0.5) if n > 1 else float("nan")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = _probe.parser(__doc__)
    ap.add_argument("--n", type=int, default=96, help="validation chunks (several per paragraph)")
    ap.add_argument("--max-target", type=int, default=64, help="target tokens per chunk")
    args = ap.parse_args(argv)
    pipe, start = _probe.load(args)
    texts = _probe.val_chunks(pipe, args.data_dir, args.n)
    nats = losses(pipe, texts, args.max_target)
    result = _probe.record(
        args,
        "probe_soft_gain.py",
        chunks=len(texts),
        nats_per_token={k: round(v, 4) for k, v in nats.items()},
    )
    _probe.finish(args, result, start)


if __name__ == "__main__":
    main()
