"""The E2LLM trainer: two stages, two objectives, exact resume, validation, metrics.

Stage 1 trains the adapter alone on reconstruction at a high learning rate; stage 2
adds the LoRA weights and mixes reconstruction with long-context QA. Every
``save_every`` steps the whole state (weights, optimizer, RNG, step) is checkpointed;
examples are a pure function of their index, so a resumed run continues exactly.

Launched on several processes (``torchrun``, ``accelerate launch``), each optimizer
step still uses the same examples: rank ``r`` takes the examples ``j`` of every
micro-batch with ``j % world_size == r``, gradients are summed over the ranks, and
rank 0 alone validates and writes checkpoints and metrics.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..generation import GenerationConfig
from ..io import write_json, write_text
from ..metrics import best_score
from ..model import E2LLMModel, TrainExample
from ..precision import autocast
from .bow import bow_loss, bow_warmup, chunk_words
from .config import TrainConfig
from .distributed import Distributed
from .examples import ExampleFactory, ExampleSpec
from .features import ParagraphStore
from .state import find_resume, load_state, save_state

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
BOW_WARMUP_NAME = "bow_warmup.json"


def get_lr(
    step: int, peak: float, warmup: int, total: int, start: int = 0, min_ratio: float = 0.1
) -> float:
    """Linear warm-up from ``start`` then cosine decay to ``min_ratio * peak`` at ``total``."""
    if step < start:
        return 0.0
    s, span = step - start, max(1, total - start)
    if s < warmup:
        return peak * (s + 1) / warmup
    progress = min(1.0, (s - warmup) / max(1, span - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_groups(model: E2LLMModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: adapter matrices (decayed), adapter vectors (not), LoRA."""
    groups = model.trainable_parameters()
    decay = [p for p in groups["adapter"] if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in groups["adapter"] if p.requires_grad and p.dim() < 2]
    return [
        {"name": "adapter", "params": decay, "weight_decay": cfg.weight_decay},
        {"name": "adapter_no_decay", "params": no_decay, "weight_decay": 0.0},
        {"name": "lora", "params": groups["lora"], "weight_decay": 0.0},
    ]


@dataclass
class Trainer:
    """Runs (or resumes) training of ``model`` on examples from ``factory``.

    Example:
        >>> trainer = Trainer(cfg, model, factory, val_specs)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    cfg: TrainConfig
    model: E2LLMModel
    factory: ExampleFactory
    val_specs: Sequence[ExampleSpec]
    val_store: ParagraphStore | None = None
    dist: Distributed = field(default_factory=Distributed)

    def __post_init__(self) -> None:
        if self.cfg.batch_size < self.dist.world_size:
            raise ValueError(
                f"batch_size={self.cfg.batch_size} is smaller than the {self.dist.world_size} "
                "processes; raise batch_size or launch fewer processes."
            )
        self.out_dir = Path(self.cfg.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, self.cfg), lr=0.0, betas=(0.9, 0.95)
        )
        self._prompts: dict[str, Any] = {}

    # ----------------------------------------------------------------- examples
    def features(
        self, spec: ExampleSpec, store: ParagraphStore
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk features: from the cache, or from the encoder when it trains (LoRA)."""
        if self.model.encoder.trainable:
            texts = [store.chunk_texts[i] for i in spec.chunk_ids]
            return self.model.encoder(**self.model.encoder.tokenize(texts))
        return store.gather(spec.chunk_ids)

    def to_example(self, spec: ExampleSpec, store: ParagraphStore) -> TrainExample:
        tok = self.model.tokenizer
        feats, mask = self.features(spec, store)
        if spec.excerpt_ids:  # prompts with excerpts rarely repeat: not cached
            prompt = self.model.prompt(spec.question, excerpts=self.excerpts(spec, store))
        else:
            if spec.question not in self._prompts:
                self._prompts[spec.question] = self.model.prompt(spec.question)
            prompt = self._prompts[spec.question]
        target = tok(spec.target, add_special_tokens=False)["input_ids"][
            : self.cfg.max_target_tokens
        ]
        if len(target) < self.cfg.max_target_tokens and tok.eos_token_id is not None:
            target = [*target, tok.eos_token_id]
        return TrainExample(feats, mask, prompt, target)

    @staticmethod
    def excerpts(spec: ExampleSpec, store: ParagraphStore) -> list[str]:
        return [store.chunk_texts[i] for i in spec.excerpt_ids]

    def micro_batch(self, step: int, micro: int) -> list[ExampleSpec]:
        per_step = self.cfg.batch_size * self.cfg.grad_accum
        first = step * per_step + micro * self.cfg.batch_size
        kind = "recon" if step < self.cfg.stage1_steps else None
        return [self.factory.example(first + j, kind) for j in range(self.cfg.batch_size)]

    def batch_loss(
        self, specs: Sequence[ExampleSpec], store: ParagraphStore
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted loss of a batch, with the loss of each objective for logging."""
        total: torch.Tensor = torch.zeros((), device=self.model.device)
        logs = {}
        for kind, weight in (("recon", self.cfg.recon_weight), ("qa", 1.0)):
            part = [s for s in specs if s.kind == kind]
            if not part:
                continue
            examples = [self.to_example(s, store) for s in part]
            loss = self.model(examples)
            total = total + weight * loss * len(part) / len(specs)
            logs[f"loss_{kind}"] = float(loss.detach())
            if kind == "recon" and self.cfg.bow_weight > 0:  # on the features just gathered
                bow = torch.stack(
                    [self.bow_loss(s, ex, store) for s, ex in zip(part, examples, strict=True)]
                ).mean()
                total = total + self.cfg.bow_weight * bow * len(part) / len(specs)
                logs["loss_bow"] = float(bow.detach())
        return total, logs

    def bow_loss(
        self, spec: ExampleSpec, example: TrainExample, store: ParagraphStore
    ) -> torch.Tensor:
        """:func:`.bow.bow_loss` of ``example``'s soft tokens against ``spec``'s words."""
        words, group = chunk_words(self.model, [store.chunk_texts[i] for i in spec.chunk_ids])
        return bow_loss(self.model, example.features, example.mask, words, group)

    # ----------------------------------------------------------------- steps
    def set_lr(self, step: int) -> dict[str, float]:
        c = self.cfg
        lrs = {
            "adapter": get_lr(step, c.lr_adapter, c.warmup_steps, c.steps, 0, c.min_lr_ratio),
            "lora": get_lr(
                step, c.lr_lora, c.warmup_steps, c.steps, c.stage1_steps, c.min_lr_ratio
            ),
        }
        lrs["adapter_no_decay"] = lrs["adapter"]
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[group["name"]]
        return lrs

    def micro_step(self, step: int, micro: int) -> dict[str, float]:
        """Forward + backward of this rank's share of a micro-batch; global losses for logging.

        The loss is scaled by the share of the micro-batch this rank holds, so the sum
        of the ranks' gradients is the gradient of the whole micro-batch (exactly so
        when the targets have equal lengths; the loss is a mean over target tokens).
        """
        specs = self.micro_batch(step, micro)
        mine = self.dist.shard(specs)
        with autocast(self.model.device, self.cfg.autocast):  # type: ignore[arg-type]
            loss, parts = self.batch_loss(mine, self.factory.store)
        share = len(mine) / len(specs)  # 1.0 on a single process
        (loss * share / self.cfg.grad_accum).backward()
        logs = {"loss": float(loss.detach()) * share}
        # Keys from the whole micro-batch, so the same on every rank (bow: on recon examples).
        for name, kind in (("recon", "recon"), ("qa", "qa"), ("bow", "recon")):
            n_all = sum(s.kind == kind for s in specs)
            if n_all and (name != "bow" or self.cfg.bow_weight > 0):
                n_mine = sum(s.kind == kind for s in mine)
                logs[f"loss_{name}"] = parts.get(f"loss_{name}", 0.0) * (n_mine / n_all)
        return self.dist.all_reduce_sum(logs)

    def train_step(self, step: int) -> dict[str, Any]:
        self.model.adapter.train()
        lrs = self.set_lr(step)
        self.optimizer.zero_grad(set_to_none=True)
        logs: dict[str, list[float]] = {}
        loss_sum = 0.0
        for micro in range(self.cfg.grad_accum):
            parts = self.micro_step(step, micro)
            loss_sum += parts.pop("loss") / self.cfg.grad_accum
            for k, v in parts.items():
                logs.setdefault(k, []).append(v)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.dist.all_reduce_grads(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        record = {"step": step + 1, "loss": loss_sum, "grad_norm": float(grad_norm)}
        record.update({k: sum(v) / len(v) for k, v in logs.items()})
        record.update({f"lr_{k}": v for k, v in lrs.items() if k != "adapter_no_decay"})
        return record

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation loss per objective and greedy-answer F1/EM on QA examples."""
        with autocast(self.model.device, self.cfg.autocast):  # type: ignore[arg-type]
            return self._validate()

    def _validate(self) -> dict[str, float]:
        store = self.val_store or self.factory.store
        self.model.eval()
        out: dict[str, list[float]] = {}
        for spec in self.val_specs:
            loss = self.model([self.to_example(spec, store)])
            out.setdefault(f"val_loss_{spec.kind}", []).append(float(loss))
        qa = [s for s in self.val_specs if s.kind == "qa"][: self.cfg.val_generations]
        gen = GenerationConfig(max_new_tokens=24)
        for spec in qa:
            feats, mask = self.features(spec, store)
            answer = self.model.generate(
                feats, mask, spec.question, gen, excerpts=self.excerpts(spec, store)
            ).text
            f1, em = best_score(answer, spec.answers)
            out.setdefault("val_f1", []).append(f1)
            out.setdefault("val_em", []).append(em)
        return {k: sum(v) / len(v) for k, v in out.items()}

    # ----------------------------------------------------------------- loop
    def train(self, max_steps_this_run: int | None = None) -> dict[str, Any]:
        """Train until ``cfg.steps`` (or for ``max_steps_this_run`` steps), resuming if possible."""
        resume = find_resume(self.out_dir)
        start = load_state(self.model, self.optimizer, resume) if resume else 0
        if start == 0 and self.cfg.bow_warmup_steps and self.dist.is_main:
            self._bow_warmup()  # rank 0; the broadcast below hands its adapter to the rest
        self.dist.broadcast_params([p for g in self.optimizer.param_groups for p in g["params"]])
        if self.dist.is_main:
            self._truncate_log(start)
        end = (
            self.cfg.steps
            if max_steps_this_run is None
            else min(self.cfg.steps, start + max_steps_this_run)
        )
        last: dict[str, Any] = {}
        bar = tqdm(
            range(start, end),
            initial=start,
            total=self.cfg.steps,
            desc="training",
            disable=not self.dist.is_main,
        )
        spent = self._step_seconds()
        if self._over_budget(spent):
            logger.info(
                "Time budget of %ss already spent; nothing to train", self.cfg.time_budget_s
            )
            return last
        for step in bar:
            t0 = time.perf_counter()
            last = self.train_step(step)
            last["sec"] = round(time.perf_counter() - t0, 3)
            spent += last["sec"]
            bar.set_postfix(loss=f"{last['loss']:.3f}")
            stop = self._over_budget(spent)
            if stop:
                last["stopped"] = "time_budget_s"
                logger.info("Time budget of %ss spent at step %d", self.cfg.time_budget_s, step + 1)
            if self.dist.is_main:
                self._finish_step(last, step + 1 if stop else end, final=stop)
            self.dist.barrier()  # the other ranks wait for validation and the checkpoint
            if stop:
                break
        return last

    def _step_seconds(self) -> float:
        """Step seconds logged so far (kept across resumes, so a budget spans sessions)."""
        path = self.out_dir / METRICS_NAME
        if not path.exists():
            return 0.0
        return sum(json.loads(line).get("sec", 0.0) for line in path.read_text().splitlines())

    def _over_budget(self, spent: float) -> bool:
        """Whether ``time_budget_s`` is spent; any rank over it stops them all."""
        if not self.cfg.time_budget_s:
            return False
        over = float(spent >= self.cfg.time_budget_s)
        return self.dist.all_reduce_sum({"over": over})["over"] > 0

    def _bow_warmup(self) -> None:
        """Stage 0 (:func:`.bow.bow_warmup`); deterministic, so a rerun repeats it exactly."""
        c = self.cfg
        log = bow_warmup(
            self.model,
            self.factory.store,
            c.bow_warmup_steps,
            c.bow_warmup_batch,
            c.lr_adapter,
            c.seed,
            lambda: autocast(self.model.device, c.autocast),  # type: ignore[arg-type]
        )
        write_json(self.out_dir / BOW_WARMUP_NAME, log)

    def _finish_step(self, record: dict[str, Any], end: int, final: bool = False) -> None:
        """Validate, log and checkpoint after a step as the schedule says (rank 0 only)."""
        done = record["step"]
        if done % self.cfg.eval_every == 0 or done == self.cfg.steps or final:
            record.update(self.validate())
            logger.info(
                "step %d: %s",
                done,
                {k: round(v, 4) for k, v in record.items() if isinstance(v, float)},
            )
        self._log(record)
        if done % self.cfg.save_every == 0 or done == end:
            save_state(self.model, self.optimizer, done, self.out_dir)

    def _truncate_log(self, step: int) -> None:
        """Drop records logged after ``step`` by a run that was killed before saving them."""
        path = self.out_dir / METRICS_NAME
        if path.exists():
            keep = [
                line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step
            ]
            write_text(path, "".join(f"{line}\n" for line in keep))

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out_dir / METRICS_NAME, "a") as fh:
            fh.write(json.dumps(record) + "\n")
