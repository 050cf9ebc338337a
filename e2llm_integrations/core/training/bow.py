"""Bag-of-words loss: soft tokens scored against the decoder's own token embeddings.

The language-model losses (reconstruction, QA) let a soft token keep a chunk's topic and
drop its names: the decoder can write fluent text on the topic without them. This loss
asks each soft token to sit near the input embeddings of the words it stands for, which
the decoder can copy. It is used two ways:

* ``bow_weight``: added to every reconstruction example of stages 1 and 2;
* ``bow_warmup_steps``: a stage 0 that trains the adapter alone on it, over the cached
  chunk features, with no decoder pass (several times cheaper than a decoder step), so
  the decoder starts reading soft tokens that already point at their words.

Example:
    >>> loss = bow_loss(model, feats, mask, [[791, 2335]])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..model import E2LLMModel
from .features import ParagraphStore

logger = logging.getLogger(__name__)

BOW_SCALE = 20.0
"""Logit scale: cosine similarity times this."""


def bow_loss(
    model: E2LLMModel,
    features: torch.Tensor,
    mask: torch.Tensor,
    words: Sequence[Sequence[int]],
    group: int = 1,
) -> torch.Tensor:
    """Mean negative log-probability of each group's words under its soft tokens.

    A soft token is scored against every row of the decoder's input-embedding table
    (cosine x :data:`BOW_SCALE`, softmax). ``words[i]`` are the decoder tokens that the
    ``i``-th group of ``group`` consecutive soft tokens stands for; a word's probability is
    the mean of the group's, so any one soft token of the group may carry it.

    Args:
        model: The model whose adapter makes the soft tokens.
        features: (n_chunks, L, d_enc) features of the chunks.
        mask: (n_chunks, L).
        words: Decoder token ids per group, in :meth:`E2LLMModel.soft_tokens` order.
        group: Soft tokens per group: 1 for window-pooled soft tokens (each has its own
            words), ``tokens_per_chunk`` for PMA queries (they share the chunk's).
    """
    soft = model.soft_tokens(features, mask)
    if soft.shape[0] != len(words) * group:
        raise ValueError(
            f"{soft.shape[0]} soft tokens but words for {len(words)} groups of {group}."
        )
    table = model.decoder.get_input_embeddings().weight.detach()
    cos = (
        nn.functional.normalize(soft.float(), dim=-1)
        @ nn.functional.normalize(table.float(), dim=-1).T
    )
    logp = (BOW_SCALE * cos).log_softmax(dim=-1).view(len(words), group, -1)
    logp = logp.logsumexp(dim=1) - math.log(group)  # (groups, vocab): mean probability
    terms = [
        -logp[i, torch.tensor(sorted(set(ids)), device=logp.device)].mean()
        for i, ids in enumerate(words)
        if ids
    ]
    return torch.stack(terms).mean() if terms else logp.new_zeros(())


def chunk_words(model: E2LLMModel, texts: Sequence[str]) -> tuple[list[list[int]], int]:
    """Decoder tokens the soft tokens of chunks ``texts`` stand for, and the group size.

    Window pooling gives a chunk ``k`` soft tokens over ``k`` contiguous windows, so its
    decoder tokens are split into ``k`` equal runs, one per soft token (the windows are
    equal runs of encoder tokens: the split is close, not exact). PMA's ``k`` queries
    each see the whole chunk, so they share its tokens as one group.
    """
    k = model.config.encoder.tokens_per_chunk
    pma = model.encoder.token_states
    out: list[list[int]] = []
    for ids in model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        if pma:
            out.append(ids)
        else:
            out.extend(ids[len(ids) * j // k : len(ids) * (j + 1) // k] for j in range(k))
    return out, (k if pma else 1)


def bow_warmup(
    model: E2LLMModel,
    store: ParagraphStore,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    autocast: Any,
) -> list[dict[str, float]]:
    """Stage 0: train the adapter alone on :func:`bow_loss` over the store's chunks.

    Deterministic in ``seed``; cosine schedule with a 5% warm-up; its own AdamW (the
    main run's optimizer state is untouched). Returns the loss and the seconds elapsed
    every 50 steps.
    """
    start = time.perf_counter()
    rng = random.Random(seed)
    params = [p for p in model.adapter.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = max(1, steps // 20)
    log: list[dict[str, float]] = []
    model.adapter.train()
    for step in range(steps):
        scale = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        ids = rng.sample(range(len(store.chunk_texts)), min(batch_size, len(store.chunk_texts)))
        words, group = chunk_words(model, [store.chunk_texts[i] for i in ids])
        with autocast():
            loss = bow_loss(model, *store.gather(ids), words, group)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log.append({
                "bow_step": step + 1,
                "loss_bow": float(loss.detach()),
                "sec": round(time.perf_counter() - start, 1),
            })  # fmt: skip
            logger.info(
                "bag-of-words warm-up step %d/%d: loss %.3f", step + 1, steps, log[-1]["loss_bow"]
            )
    return log
