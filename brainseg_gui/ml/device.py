"""Choosing the torch device for inference and training, and naming it for the user.

"auto" takes CUDA when a GPU is usable, else the CPU. On the CPU the thread count is set once to the
cores this process may use (torch's default can oversubscribe a shared machine).
"""

from __future__ import annotations

import logging

import torch

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.ml.cpu_threads import cpu_threads, describe_cpu

log = logging.getLogger(__name__)

#: Accepted values of `--device`.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class DeviceError(BrainSegError):
    """The requested device does not exist on this machine (e.g. --device cuda without a GPU)."""


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads` (default: the usable cores); returns the count.

    Respects an explicit OMP_NUM_THREADS, which users set on shared servers on purpose.
    """
    if threads is None:
        threads = cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def select_device(request: str | torch.device = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a usable torch.device, or DeviceError saying why not."""
    if isinstance(request, torch.device):
        request = str(request)
    name = str(request).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        configure_cpu_threads()
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise DeviceError(
                f"device {request!r} was asked for, but no usable CUDA GPU was found "
                f"(torch {torch.__version__}, {build}); use --device cpu or --device auto"
            )
        device = torch.device(name)
        index = device.index if device.index is not None else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {request!r} was asked for, but this machine has {count} CUDA GPU(s)")
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device {request!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def describe_device(device: torch.device) -> str:
    """Human-readable device name: 'NVIDIA H100 80GB HBM3 (CUDA)' or 'CPU, 2 threads'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (CUDA)"
    return describe_cpu(torch.get_num_threads())


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for inference on `device`: bf16 where supported, else fp16; None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
