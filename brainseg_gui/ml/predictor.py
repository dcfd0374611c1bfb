"""Inference with torch: a callable built from a model directory, configured entirely by its card.

The pipeline around the network is ml/prediction.py's (shared with the torch-free OpenVINO path);
here the network runs: pad to the network's divisor -> MONAI sliding-window inference (Gaussian
blending; usually one window for a brain crop) -> unpad -> [TTA: mean logits over mirrored inputs].
CUDA runs under autocast; a CUDA out-of-memory retries with smaller windows, then the CPU. On the
CPU the network may run on OpenVINO (ml/openvino_network.py).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from brainseg_gui.core.errors import ModelError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.study import Study
from brainseg_gui.ml.device import autocast_dtype, describe_device, select_device
from brainseg_gui.ml.openvino_network import resolve_runtime
from brainseg_gui.ml.prediction import InferenceSettings, Prediction, WindowSettings, segment

log = logging.getLogger(__name__)

#: How many times a CUDA out-of-memory halves the windows before falling back to the CPU.
OOM_HALVINGS = 2
#: Test-time augmentation: every combination of mirroring the three spatial axes (8 passes).
TTA_FLIPS: tuple[tuple[int, ...], ...] = tuple(
    tuple(axes) for count in range(4) for axes in itertools.combinations((2, 3, 4), count)
)


class Predictor:
    """Segments studies with one loaded generator; build it with `from_model_dir`.

    Thread-compatible: one call at a time per instance (the network is shared state).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        card: Any,
        device: torch.device,
        tta: bool = False,
        allow_missing: bool = False,
        windows: WindowSettings | None = None,
        runtime: str = "torch",
    ) -> None:
        self.network = _for_inference(network)
        #: 'torch' or 'openvino' (on the CPU only; see ml/openvino_network.py); converted on first use.
        self.runtime = resolve_runtime(runtime, device)
        self._cpu_network: Any = None
        self.card = card
        self.device = device
        self.tta = tta
        self.allow_missing = allow_missing
        self.divisor = _divisor(card)
        self.settings = InferenceSettings.from_card(card)
        if windows is not None:
            self.settings = dataclasses.replace(self.settings, windows=windows)
        self.model_version = self.settings.model_version
        #: Why the shipped model is used instead of the active one ("" when it is not; see from_model_dir).
        self.model_note = ""

    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path | None = None,
        *,
        device: str | torch.device = "auto",
        tta: bool = False,
        allow_missing: bool = False,
        runtime: str = "torch",
    ) -> Predictor:
        """Load the card and weights from `model_dir` onto `device`; `runtime` runs the CPU network.

        None: the user's active model (`brainseg models`), or the shipped model when that one cannot
        be used; `model_note` then says why (it is "" otherwise).
        """
        from brainseg_gui.ml.checkpoint import load_model

        torch_device = select_device(device)
        note = ""
        if model_dir is None:
            from brainseg_gui.ml.model_registry import load_active_model

            loaded, note = load_active_model(torch_device)
        else:
            loaded = load_model(Path(model_dir), torch_device)
        predictor = cls(loaded.generator, card=loaded.card, device=torch_device, tta=tta, allow_missing=allow_missing,
                        runtime=runtime)
        predictor.model_note = note
        return predictor

    @property
    def device_description(self) -> str:
        return self._describe(self.device)

    def _describe(self, device: torch.device) -> str:
        """The device, and the runtime when the network ran on OpenVINO (a CPU only)."""
        return describe_device(device) + (", OpenVINO" if device.type == "cpu" and self.runtime == "openvino" else "")

    def _network_on(self, device: torch.device) -> Any:
        """What runs the windows on `device`: the torch module, or its OpenVINO twin on the CPU."""
        if device.type != "cpu" or self.runtime != "openvino":
            return self.network
        if self._cpu_network is None:
            from brainseg_gui.core.dicom_sources import cache_root
            from brainseg_gui.ml.openvino_network import OpenVinoNetwork

            try:
                self._cpu_network = OpenVinoNetwork(self.network, card=self.card, divisor=self.divisor,
                                                    cache_dir=cache_root())
            except ModelError as error:  # the torch network gives the same labels, only slower
                log.warning("%s; running the network on torch", error)
                self.runtime = "torch"
                return self.network
        return self._cpu_network

    def __call__(
        self,
        study: Study,
        *,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
        keep_probabilities: bool = False,
    ) -> Prediction:
        """Segment `study`; raises StudyLoadError for missing sequences unless allow_missing."""
        return segment(study, self._network_logits, self.settings, allow_missing=self.allow_missing, tta=self.tta,
                       progress=progress, cancel=cancel, keep_probabilities=keep_probabilities)

    def _network_logits(self, volume: np.ndarray, progress: ProgressFn, cancel: CancelToken,
                        notes: list[str]) -> tuple[np.ndarray, str]:
        """ml/prediction's NetworkLogits: the logits of `volume`, and the device that made them."""
        logits, device = self._logits_with_fallback(torch.from_numpy(volume), progress, cancel, notes)
        return logits.numpy(), self._describe(device)

    def _logits_with_fallback(
        self, volume: torch.Tensor, progress: ProgressFn, cancel: CancelToken, notes: list[str]
    ) -> tuple[torch.Tensor, torch.device]:
        """(1, 4, x, y, z) at model resolution -> (1, 3, x, y, z) float32 CPU logits, and the device used."""
        padded = [n + (-n) % self.divisor for n in volume.shape[2:]]
        roi = tuple(min(r, n) for r, n in zip(self.settings.windows.roi, padded))  # halve what is really used
        for attempt in range(OOM_HALVINGS + 1):
            try:
                network = self._network_on(self.device)
                return self._logits(volume, network, self.device, roi, progress, cancel), self.device
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if attempt == OOM_HALVINGS:
                    break
                smaller = tuple(max(self.divisor, (n // 2) // self.divisor * self.divisor) for n in roi)
                message = f"out of memory on {describe_device(self.device)} with {_fmt(roi)} windows; " \
                          f"retrying with {_fmt(smaller)}"
                log.warning(message)
                notes.append(message)
                roi = smaller
        if self.device.type == "cpu":
            raise ModelError(f"out of memory on the CPU even with {_fmt(roi)} windows")
        cpu = torch.device("cpu")
        message = f"out of memory on {describe_device(self.device)} even with {_fmt(roi)} windows; " \
                  "running this case on the CPU"
        log.warning(message)
        notes.append(message)
        fallback = copy.deepcopy(self.network).to(cpu)
        return self._logits(volume, fallback, cpu, self.settings.windows.roi, progress, cancel), cpu

    def _logits(
        self,
        volume: torch.Tensor,
        network: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        roi: Sequence[int],
        progress: ProgressFn,
        cancel: CancelToken,
    ) -> torch.Tensor:
        size = tuple(volume.shape[2:])
        padded = _pad_to(volume, self.divisor).to(device)
        window = tuple(max(self.divisor, min(r, n) // self.divisor * self.divisor)
                       for r, n in zip(roi, padded.shape[2:]))
        flips = TTA_FLIPS if self.tta else ((),)
        total = torch.zeros((1, 3, *padded.shape[2:]), dtype=torch.float32, device=device)
        dtype = autocast_dtype(device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            for index, axes in enumerate(flips):
                step = sub_progress(progress, index / len(flips), (index + 1) / len(flips))
                flipped = padded.flip(axes) if axes else padded
                counted = _CountingNetwork(network, step, cancel, _window_count(padded.shape[2:], window,
                                                                                self.settings.windows.overlap))
                out = _sliding_window(flipped, window, counted, self.settings.windows)
                total += (out.flip(axes) if axes else out).float()
        logits = total / len(flips)
        return logits[:, :, : size[0], : size[1], : size[2]].cpu()


class _CountingNetwork:
    """Wraps the network for sliding_window_inference: progress and cancel between windows."""

    def __init__(self, network: Callable[[torch.Tensor], torch.Tensor], progress: ProgressFn, cancel: CancelToken,
                 windows: int) -> None:
        self.network, self.progress, self.cancel, self.windows, self.done = network, progress, cancel, windows, 0

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        self.cancel.raise_if_cancelled()
        out = self.network(window.contiguous(memory_format=torch.channels_last_3d))
        self.done += 1
        self.progress(self.done / max(self.windows, 1), f"window {self.done} of {self.windows}")
        return out


def _sliding_window(volume: torch.Tensor, window: tuple[int, ...], network: Callable[[torch.Tensor], torch.Tensor],
                    settings: WindowSettings) -> torch.Tensor:
    """MONAI's sliding_window_inference; when one window covers the volume, the network alone.

    With a single window the Gaussian blending divides the weights out again, so the result is the
    same; skipping it spares `import monai` (which loads all of MONAI, 2-3 s of every CLI start).
    """
    if tuple(volume.shape[2:]) == tuple(window):
        return network(volume)
    from monai.inferers import sliding_window_inference

    return cast(torch.Tensor, sliding_window_inference(volume, window, 1, network, overlap=settings.overlap,
                                                       mode=settings.mode))


def _for_inference(network: nn.Module) -> nn.Module:
    """Eval copy with Conv+BN folded, weights in channels_last_3d (measured ~1.7x on 2 CPU cores)."""
    from brainseg_gui.ml.networks import fuse_for_inference

    return fuse_for_inference(network.eval()).to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]


def _window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    count = 1
    for n, r in zip(shape, roi):
        stride = max(int(r * (1 - overlap)), 1)
        count *= 1 if n <= r else int(np.ceil((n - r) / stride)) + 1
    return count


def _pad_to(volume: torch.Tensor, divisor: int) -> torch.Tensor:
    """Zero-pad the spatial axes at their far ends up to multiples of `divisor` (zero = outside brain)."""
    pads: list[int] = []
    for n in reversed(volume.shape[2:]):
        pads += [0, (-n) % divisor]
    return torch.nn.functional.pad(volume, pads) if any(pads) else volume


def _divisor(card: Any) -> int:
    from brainseg_gui.ml.networks import divisor

    return divisor(card.config)


def _fmt(roi: Sequence[int]) -> str:
    return "x".join(str(n) for n in roi)


def random_predictor(
    config: Mapping[str, Any] | None = None,
    *,
    resolution_mm: float = 2.0,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Predictor:
    """A predictor with random weights (timing and plumbing only: its masks mean nothing)."""
    from brainseg_gui.ml.checkpoint import ModelCard
    from brainseg_gui.ml.networks import DEFAULT_CONFIG, build_generator

    config = dict(config or DEFAULT_CONFIG)
    torch.manual_seed(seed)
    torch_device = select_device(device)
    network = build_generator("generator3d", config).to(torch_device)
    card = ModelCard(architecture="generator3d", config=config, resolution_mm=resolution_mm,
                     version="random-untrained", description="random weights: for timing only")
    return Predictor(network, card=card, device=torch_device)
