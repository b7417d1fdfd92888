"""Process groups and the global-batch sampler (same global batches for any number of processes).

Single process, torchrun (DDP: nccl on GPU, gloo on CPU) and the deepspeed launcher all set
the usual ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables; this module reads them.
"""

from __future__ import annotations

import dataclasses
import math
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device(device)


def init_distributed(device: str = "auto", use_deepspeed: bool = False) -> DistInfo:
    """Join the process group the launcher set up (none for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 or use_deepspeed:
        if use_deepspeed:
            import deepspeed

            deepspeed.init_distributed(dist_backend="nccl" if dev.type == "cuda" else "gloo")
        elif not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank, world_size, local_rank, dev)


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def total_steps(num_samples: int, global_batch: int, epochs: float, max_steps: int | None) -> int:
    if max_steps:
        return max_steps
    return max(1, math.ceil(epochs * num_samples / global_batch))


class GlobalBatchSampler:
    """This rank's micro-batches of ``(sample index, epoch)`` keys, ``steps * grad_accum`` of them.

    The sample stream is a fresh permutation per epoch (seeded), cut into global batches of
    ``per_device * world_size * grad_accum``. Micro-batch ``a`` of rank ``r`` is slice
    ``a * world_size + r`` of its global batch, so one process with batch ``2b`` and two with
    batch ``b`` see the same global batches.
    """

    def __init__(self, num_samples: int, per_device: int, info: DistInfo, grad_accum: int, steps: int, seed: int = 0, shuffle: bool = True,
                 start_step: int = 0):
        if num_samples < 1:
            raise ValueError("no training samples")
        self.num_samples = num_samples
        self.per_device = per_device
        self.world_size = info.world_size
        self.rank = info.rank
        self.grad_accum = grad_accum
        self.steps = steps
        self.seed = seed
        self.shuffle = shuffle
        self.start_step = start_step  # a resumed run goes on with the batches it had not seen

    @property
    def global_batch(self) -> int:
        return self.per_device * self.world_size * self.grad_accum

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.grad_accum

    def _stream(self):
        """(sample index, epoch) pairs, epoch after epoch."""
        epoch = 0
        while True:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                order = torch.randperm(self.num_samples, generator=generator).tolist()
            else:
                order = range(self.num_samples)
            yield from ((i, epoch) for i in order)
            epoch += 1

    def __iter__(self):
        stream = self._stream()
        for _ in range(self.start_step * self.global_batch):
            next(stream)
        for _ in range(self.start_step, self.steps):
            batch = [next(stream) for _ in range(self.global_batch)]
            for a in range(self.grad_accum):
                start = (a * self.world_size + self.rank) * self.per_device
                yield batch[start : start + self.per_device]
