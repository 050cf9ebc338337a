"""Data-parallel training on several processes, as started by ``torchrun`` or ``accelerate launch``.

Both launchers describe the job in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Every process holds the whole model;
the trainable weights are small (adapter + LoRA), so instead of a DDP wrapper the
gradients are summed with one all-reduce per dtype before the optimizer step, which
keeps the weights of all ranks identical. With ``WORLD_SIZE`` unset or 1 every method
here is a no-op, so a single process trains exactly as before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TypeVar

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Rank 0 may encode the feature cache while the others wait on a barrier.
TIMEOUT = timedelta(minutes=60)


@dataclass
class Distributed:
    """This process's place in a data-parallel job (a single process by default).

    Attributes:
        rank: Global rank of this process.
        world_size: Number of processes.
        device: Device of this process (``cuda:LOCAL_RANK`` on CUDA).

    Example:
        >>> with Distributed.from_env(torch.device("cpu")) as job:  # doctest: +SKIP
        ...     trainer = build_trainer(cfg, job)
        ...     trainer.train()
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed:
        """Join the process group the launcher describes in the environment, if any.

        Uses NCCL when ``device`` is CUDA (each process takes ``cuda:LOCAL_RANK``) and
        gloo on CPU. Without ``WORLD_SIZE > 1`` this is a single process on ``device``.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(
                backend, init_method="env://", rank=rank, world_size=world, timeout=TIMEOUT
            )
        logger.info("Rank %d of %d on %s", rank, world, device)
        return cls(rank, world, device)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, metrics and exports (rank 0)."""
        return self.rank == 0

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> Distributed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- work split
    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's items: those whose index ``j`` has ``j % world_size == rank``."""
        return list(items[self.rank :: self.world_size])

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the body on rank 0 first, then on the others (e.g. build, then load a cache)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    # ----------------------------------------------------------------- collectives
    def all_reduce_sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sum each value over the ranks (every rank must pass the same keys)."""
        if not self.enabled:
            return values
        keys = sorted(values)
        buf = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(buf)
        return dict(zip(keys, buf.tolist(), strict=True))

    def all_reduce_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over the ranks, in place (missing ones count as 0)."""
        if not self.enabled:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in grads])  # one collective per dtype
            dist.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast_params(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Copy rank 0's values of ``params`` to every rank."""
        if not self.enabled:
            return
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)
