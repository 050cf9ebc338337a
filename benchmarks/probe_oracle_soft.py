"""How many positions does a fact need, at best? Soft tokens made from the fact's own words.

Every checkpoint so far answers the paraphrased NIAH questions in the right category but
never names the fact from soft tokens alone, even with the fact's chunk as the only one
(``probe_soft_reading.py``). This asks whether any one-vector-per-chunk design could, on
this decoder: it skips the encoder and the adapter and builds *oracle* soft tokens from the
decoder's own input embeddings of the fact sentence's tokens, mean-pooled over windows of
``w`` tokens (``w = 1`` is the raw text; a 64-token chunk per soft token is ``w = 64``),
each rescaled to the mean embedding norm (a mean of unrelated vectors is shorter than any
of them). The paraphrased question is then asked as ``e2llm ask --expand 0`` would,
greedily, with the checkpoint's decoder LoRA and with the base decoder, and an answer counts
when it contains the answer word, as in ``e2llm eval niah --variant paraphrase``.

The pooling is untrained (a trained adapter can do better than a mean, and the LoRA never
saw pooled embeddings), so this bounds nothing strictly: it shows how far one vector per
``w`` tokens is from what the decoder reads without training for it. The 16 facts are
evaluation data: this measures, it tunes nothing.

Usage:
    python benchmarks/probe_oracle_soft.py [--checkpoint PATH] [--windows 1,2,4,8,16,64]
"""

from __future__ import annotations

import _probe  # benchmarks/_probe.py: run as python benchmarks/<script>.py
import torch

from e2llm_integrations import E2LLMPipeline
from e2llm_integrations.core.generation import GenerationConfig, Usage, stream_tokens
from e2llm_integrations.eval.niah import PARAPHRASES


def oracle_soft(pipe: E2LLMPipeline, sentence: str, window: int) -> torch.Tensor:
    """(ceil(T / window), d_dec) means of the sentence's token embeddings, norm-matched."""
    model = pipe.model
    table = model.decoder.get_input_embeddings()
    ids = torch.tensor(pipe.tokenizer(sentence, add_special_tokens=False)["input_ids"])
    emb = table(ids.to(model.device)).float()  # (T, d_dec)
    pooled = torch.stack([w.mean(0) for w in emb.split(window)])  # (n, d_dec)
    target = emb.norm(dim=-1).mean()
    return pooled * (target / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-6))


def answer(pipe: E2LLMPipeline, soft: torch.Tensor, question: str, base: bool) -> str:
    model = pipe.model
    prompt = model.prompt(question)
    gen = GenerationConfig(max_new_tokens=16)
    with torch.inference_mode(), model.base_only(base):
        embeds = model.embed_sequence(prompt, soft).unsqueeze(0)
        usage = Usage(input_positions=embeds.shape[1], soft_tokens=soft.shape[0])
        pieces = stream_tokens(model.decoder, model.tokenizer, embeds, gen, usage)
        return "".join(p.text for p in pieces).strip()


def main(argv: list[str] | None = None) -> None:
    ap = _probe.parser(__doc__)
    ap.add_argument("--windows", default="1,2,4,8,16,64", help="tokens per oracle soft token")
    args = ap.parse_args(argv)
    windows = [int(w) for w in args.windows.split(",")]
    pipe, start = _probe.load(args)
    found: dict[str, dict[str, float]] = {}
    replies = []
    for decoder in ("lora", "base"):
        for w in windows:
            hits = 0
            for needle in PARAPHRASES:
                soft = oracle_soft(pipe, needle.sentence, w)
                reply = answer(pipe, soft, needle.question, base=decoder == "base")
                hits += int(needle.found(reply))
                replies.append({"decoder": decoder, "window": w, "answer": needle.answer,
                                "positions": soft.shape[0], "reply": reply})  # fmt: skip
            found.setdefault(decoder, {})[str(w)] = hits / len(PARAPHRASES)
            print(f"{decoder} decoder, {w} tokens per soft token: {hits}/{len(PARAPHRASES)} named")
    result = _probe.record(args, "probe_oracle_soft.py", found=found, replies=replies)
    _probe.finish(args, result, start, hide=("replies",))


if __name__ == "__main__":
    main()
