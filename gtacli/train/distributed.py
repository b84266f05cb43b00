"""torchrun / env:// process groups: gloo on CPU, NCCL on CUDA; rank-0 helpers.

`gtacli finetune` runs as one process unless `torchrun` (or any launcher setting `RANK`, `WORLD_SIZE`,
`MASTER_ADDR`, `MASTER_PORT`, `LOCAL_RANK`) started several; then every process joins the group through
`env://`, picks `cuda:LOCAL_RANK` (CUDA) or the CPU, and the model is wrapped in DDP. Multi-node works the
same way (torchrun's `--nnodes/--node_rank/--rdzv_endpoint` set the variables).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

from gtacli.device import DeviceLike, resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str  # '' when not distributed

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """This process's GPU index under torchrun (0 for a single process)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device: DeviceLike = "auto") -> DistInfo:
    """Join the env:// process group when launched with several processes; otherwise a single process.

    `device` is what the CLI resolved (with `local_rank()`), or a `--device` string resolved here."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device, local_rank())
    if world <= 1:
        return DistInfo(0, 1, 0, dev, "")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank(), dev, backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over ranks of a tensor (a copy; the input is unchanged)."""
    if not info.distributed:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def all_gather_objects(obj: Any, info: DistInfo) -> List[Any]:
    if not info.distributed:
        return [obj]
    gathered: List[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_max(value: float, info: DistInfo) -> float:
    """The largest of every rank's `value` (e.g. a stop or a non-finite flag, so all ranks act alike)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())
