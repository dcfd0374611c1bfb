"""Which arithmetic a training run uses: fp32, or bf16 / fp16 autocast, per device, setting and network.

On the CPU, bf16 autocast halves a G+D step of the shipped recipe on an AVX-512 BF16 CPU
(bench/train_step.py) and leaves the fine-tune's Dice lift unchanged (bench/finetune.py); "auto"
uses it where the CPU computes bf16 natively (emulated bf16 is slower than fp32). One known fault
is guarded: torch 2.13's CPU bf16 convolution returns garbage weight gradients (up to 1e37, found
when a tiny fine-tune diverged) for a 3^3 convolution whose input is 2 voxels thick along an axis;
measured for kernels 1-4, strides 1-2, dilations 1-4 and sizes 1-8, only that case was wrong. A run
whose networks convolve anything thinner than 4 voxels at its patch size therefore stays in fp32.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import nn

from brainseg_gui.core.errors import BrainSegError

log = logging.getLogger(__name__)

#: Convolution inputs thinner than this (voxels, along any axis) are not trusted to bf16 on the CPU.
SAFE_BF16_EXTENT = 4
SETTINGS = ("auto", "bf16", "fp16", "off")


class PrecisionError(BrainSegError, ValueError):
    """A precision the device or the networks cannot honour (a ValueError: a bad setting)."""


def cpu_has_bf16() -> bool:
    """True on CPUs that compute bf16 natively (AVX-512 BF16 or AMX), where bf16 autocast pays."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `setting` asks for on `device` (None: fp32), before any network is checked."""
    if setting not in SETTINGS:
        raise PrecisionError(f"amp must be one of {', '.join(SETTINGS)}; got {setting!r}")
    if setting == "off":
        return None
    if device.type != "cuda":
        if setting == "fp16":
            raise PrecisionError("amp fp16 needs a CUDA device; on the CPU use bf16 or off")
        return torch.bfloat16 if setting == "bf16" or cpu_has_bf16() else None
    if setting == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() or setting == "bf16" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32") if dtype else "fp32"


def thinnest_convolution_input(runs: Iterable[tuple[nn.Module, tuple[tuple[int, ...], ...]]]) -> int:
    """The smallest spatial extent any Conv3d sees when each network runs on inputs of the given shapes.

    Shapes only: a copy of each network runs on the meta device (no arithmetic, no memory); should an
    operation lack a meta kernel, the copy runs on zeros on the CPU instead (correct, slower). The
    networks may themselves live on the meta device (built under `torch.device("meta")`).
    """
    thinnest = [10**9]

    def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        thinnest[0] = min(thinnest[0], *(int(n) for n in args[0].shape[2:]))

    for network, shapes in runs:
        for device in ("meta", "cpu"):
            probe = copy.deepcopy(network).to_empty(device=device).eval()  # shapes only: values unset
            for module in probe.modules():
                if type(module) is nn.Conv3d:
                    module.register_forward_pre_hook(record)
            try:
                with torch.no_grad():
                    probe(*(torch.zeros(shape, device=device) for shape in shapes))
                break
            except (NotImplementedError, RuntimeError):
                if device == "cpu":
                    raise
    return thinnest[0]


def training_dtype(setting: str, device: torch.device, thinnest: int) -> torch.dtype | None:
    """The autocast dtype a run uses: `autocast_dtype`, unless the CPU bf16 fault applies.

    `thinnest` is `thinnest_convolution_input` of the run's networks. "auto" then falls back to fp32
    with a log line; an explicit "bf16" is refused (its gradients would be wrong).
    """
    dtype = autocast_dtype(setting, device)
    if dtype != torch.bfloat16 or device.type == "cuda" or thinnest >= SAFE_BF16_EXTENT:
        return dtype
    if setting == "bf16":
        raise PrecisionError(f"bf16 on the CPU computes wrong gradients for convolutions over fewer than "
                         f"{SAFE_BF16_EXTENT} voxels, and these networks reach {thinnest} at this patch size: "
                         "use a larger patch or --amp off")
    log.info("fp32, not bf16: the networks convolve %d-voxel-thin inputs at this patch size", thinnest)
    return None
