"""Training beyond one process: `torchrun` + DistributedDataParallel, a no-op when run plainly.

The same command runs everywhere:

    brainseg train DATA --out RUN                                   one process (CPU or one GPU)
    torchrun --nproc-per-node 4 -m brainseg_gui train DATA --out RUN   four processes, one node
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m brainseg_gui train DATA --out RUN                          two nodes of eight GPUs

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous address); `setup` reads them,
starts the process group (NCCL when the processes use GPUs, gloo on the CPU) and gives each process
its device (cuda:LOCAL_RANK, or the CPU with its share of the cores). Rank 0 writes checkpoints and
model directories; every rank trains on its own patches; gradients are averaged by DDP.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

#: How long a collective may wait (e.g. rank 0 building the training cache) before failing.
TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the run; `enabled` is False for a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes ({self.backend})" if self.enabled else "1 process"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else default


def env_context() -> DistContext:
    """What torchrun's environment says (no process group is started)."""
    world = _env_int("WORLD_SIZE", 1)
    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else ""
    return DistContext(rank=_env_int("RANK", 0), world_size=world, local_rank=_env_int("LOCAL_RANK", 0),
                       local_world_size=_env_int("LOCAL_WORLD_SIZE", world), backend=str(backend))


def setup(device_request: str = "auto") -> tuple[DistContext, torch.device]:
    """Start the process group if torchrun asked for one (idempotent); the device of this process."""
    from brainseg_gui.ml.device import configure_cpu_threads, select_device

    context = env_context()
    if not context.enabled:
        return context, select_device(device_request)
    request = str(device_request).strip().lower()
    use_cuda = torch.cuda.is_available() and request != "cpu"
    if request.startswith("cuda") and not torch.cuda.is_available():
        select_device(request)  # raises DeviceError with the reason
    if use_cuda:
        device = torch.device("cuda", context.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        from brainseg_gui.ml.cpu_threads import available_cores

        configure_cpu_threads(max(1, available_cores() // max(context.local_world_size, 1)))
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, timeout=TIMEOUT,
                                device_id=device if use_cuda else None)
        atexit.register(shutdown)  # commands that do not call shutdown() still end the group cleanly
        log.info("process group: rank %d of %d (%s) on %s", context.rank, context.world_size, backend, device)
    return env_context(), device


def shutdown() -> None:
    """End the process group (call once at the end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank `src`'s `value` on every rank (pickled; for small things: metrics, cards, flags)."""
    if not active():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def mean_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean over ranks (a new tensor; the input is unchanged)."""
    if not active():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


def average_buffers(module: nn.Module) -> None:
    """Average floating buffers (BatchNorm running statistics) over ranks, so all ranks end equal."""
    if not active():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            buffer.copy_(mean_across_ranks(buffer))


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` inside DistributedDataParallel when a process group runs, else itself."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # BN statistics over the global batch
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(module)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (for evaluation, saving, and passes outside DDP)."""
    inner = getattr(module, "module", None)
    return inner if isinstance(module, nn.parallel.DistributedDataParallel) and inner is not None else module


def shard(count: int, context: DistContext) -> int:
    """This rank's share of `count` items split as evenly as possible over the ranks (at least 1)."""
    base, extra = divmod(count, context.world_size)
    return max(1, base + (1 if context.rank < extra else 0))
