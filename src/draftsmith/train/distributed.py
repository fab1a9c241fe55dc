"""Data parallelism under torchrun: process group, this rank's device, count reductions.

Every rank runs the same loop on its own slice of each global batch; gradients are
averaged by DDP. Metrics, checkpoints and the final export come from rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str | None = None) -> DistContext:
    """Join the torchrun process group when launched by torchrun; a single process otherwise.

    CUDA ranks use NCCL and their ``LOCAL_RANK`` GPU; CPU ranks use gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if world_size == 1:
        return DistContext(device=torch.device(device or ("cuda" if cuda else "cpu")))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
    return DistContext(dist.get_rank(), world_size, torch.device(f"cuda:{local_rank}" if cuda else "cpu"))


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
