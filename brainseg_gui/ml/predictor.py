"""Inference: a callable built from a model directory, configured entirely by its card.

Pipeline for one study (all arrays RAS inside, the study's own axis order outside):
prepare (brain crop, z-score) -> resample to the card's resolution -> pad to the network's divisor ->
MONAI sliding-window inference (Gaussian blending; usually one window for a brain crop at 2 mm) ->
unpad -> [TTA: mean logits over mirrored inputs] -> upsample logits to the crop's own voxels ->
sigmoid -> threshold, nesting, small-ET relabelling (card) -> paste into the full array -> undo the
reorientation. CUDA runs under autocast; a CUDA out-of-memory retries with smaller windows, then the CPU.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.labels import REGIONS, LabelConvention, from_regions
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.study import Grid, Study
from brainseg_gui.ml.device import autocast_dtype, describe_device, select_device
from brainseg_gui.ml.openvino_network import resolve_runtime
from brainseg_gui.ml.postprocess import PostprocessSettings, apply_region_steps
from brainseg_gui.ml.preprocess import model_shape, prepare, resample

log = logging.getLogger(__name__)

#: Sliding-window defaults when the card names none: windows of 192 mm a side at the model's
#: resolution (96^3 voxels at 2 mm, 128^3 at 1.5 mm), so any brain crop (at most ~180 mm with its
#: margin) is one window: on the CPU one whole pass is faster than tiles (measured at 1.5 mm: two
#: 96^3 tiles took several times one 96x120x96 pass). A quarter overlap, Gaussian blending.
DEFAULT_ROI_MM = 192.0
DEFAULT_OVERLAP = 0.25
#: How many times a CUDA out-of-memory halves the windows before falling back to the CPU.
OOM_HALVINGS = 2
#: Test-time augmentation: every combination of mirroring the three spatial axes (8 passes).
TTA_FLIPS: tuple[tuple[int, ...], ...] = tuple(
    tuple(axes) for count in range(4) for axes in itertools.combinations((2, 3, 4), count)
)


@dataclass(frozen=True)
class Prediction:
    """Predicted nested regions on the study's own grid, with how they were obtained.

    regions: (3, *grid.shape) bool, REGIONS order (WT, TC, ET), the study's axis order.
    probabilities: (3, *grid.shape) float16 when asked for, else None.
    seconds: wall time per stage ('prepare', 'network', 'postprocess', 'total').
    """

    case_id: str
    grid: Grid
    regions: np.ndarray
    probabilities: np.ndarray | None
    model_version: str
    device: str
    tta: bool
    missing: tuple[str, ...] = ()
    flagged: bool = False
    flag_reason: str = ""
    seconds: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.regions.shape != (3, *self.grid.shape):
            raise ValueError(f"regions of shape {self.regions.shape} do not fit grid {self.grid.shape}")
        self.regions.flags.writeable = False
        if self.probabilities is not None:
            self.probabilities.flags.writeable = False
        object.__setattr__(self, "seconds", MappingProxyType(dict(self.seconds)))

    def labels(self, convention: LabelConvention = LabelConvention.BRATS) -> np.ndarray:
        """uint8 label map on the study's grid in `convention`."""
        return from_regions(self.regions, convention)

    def volumes_ml(self) -> dict[str, float]:
        """Volume of each region in millilitres."""
        voxel = self.grid.voxel_volume_ml
        return {name: float(self.regions[index].sum()) * voxel for index, name in enumerate(REGIONS)}


@dataclass(frozen=True)
class WindowSettings:
    """Sliding-window parameters, in voxels at the model's resolution."""

    roi: tuple[int, int, int] = (96, 96, 96)
    overlap: float = DEFAULT_OVERLAP
    mode: str = "gaussian"


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
        self.resolution_mm = float(card.resolution_mm)
        self.divisor = _divisor(card)
        self.postprocess = PostprocessSettings.from_card(getattr(card, "postprocess", None))
        self.windows = windows or _windows_from_card(card)
        self.region_order = _region_order(card)
        self.model_version = str(getattr(card, "version", "unknown"))
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
                self._cpu_network = OpenVinoNetwork(self.network, version=self.model_version, cache_dir=cache_root())
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
        cancel = cancel or CancelToken()
        seconds: dict[str, float] = {}
        notes: list[str] = []
        started = time.perf_counter()
        flag_reason = self._check_missing(study)

        progress(0.0, f"{study.case_id}: preparing the input")
        cancel.raise_if_cancelled()
        prepared = prepare(study)
        crop_shape = tuple(prepared.volume.shape[1:])
        size = model_shape(crop_shape, prepared.spacing, self.resolution_mm)
        volume = resample(torch.from_numpy(prepared.volume)[None], size)
        seconds["prepare"] = _lap(started)

        cancel.raise_if_cancelled()
        network_started = time.perf_counter()
        logits, device_used = self._logits_with_fallback(
            volume, sub_progress(progress, 0.1, 0.85), cancel, notes
        )
        logits = logits[:, self.region_order]
        seconds["network"] = _lap(network_started)

        cancel.raise_if_cancelled()
        progress(0.85, f"{study.case_id}: post-processing")
        post_started = time.perf_counter()
        probabilities = torch.sigmoid(resample(logits, crop_shape))[0].numpy()  # type: ignore[arg-type]
        voxel_mm3 = float(np.prod(prepared.spacing))
        # Tumour lies inside the brain: a voxel outside it (zero in every sequence) is never labelled,
        # so a stray ET logit in the background cannot grow WT over the whole crop through nesting.
        inside = fill_holes(prepared.brain)
        regions_crop = apply_region_steps((probabilities > self.postprocess.threshold) & inside[None],
                                          self.postprocess.scaled_to(voxel_mm3))
        full_shape = prepared.reorientation.shape
        regions = np.zeros((3, *full_shape), dtype=bool)
        regions[(slice(None), *prepared.box)] = regions_crop
        regions = np.ascontiguousarray(prepared.reorientation.undo(regions))
        kept = None
        if keep_probabilities:
            kept = np.zeros((3, *full_shape), dtype=np.float16)
            kept[(slice(None), *prepared.box)] = probabilities
            kept = np.ascontiguousarray(prepared.reorientation.undo(kept))
        seconds["postprocess"] = _lap(post_started)
        seconds["total"] = _lap(started)
        progress(1.0, f"{study.case_id}: done")
        return Prediction(
            case_id=study.case_id,
            grid=study.grid,
            regions=regions,
            probabilities=kept,
            model_version=self.model_version,
            device=self._describe(device_used),
            tta=self.tta,
            missing=study.missing,
            flagged=bool(flag_reason),
            flag_reason=flag_reason,
            seconds=seconds,
            notes=tuple(notes),
        )

    def _check_missing(self, study: Study) -> str:
        missing = study.missing
        if not missing:
            return ""
        sources = ", ".join(str(p) for p in study.sources.values()) or "memory"
        if not self.allow_missing:
            raise StudyLoadError(
                f"case {study.case_id!r} ({sources}) lacks the sequence(s) {', '.join(missing)}; the model "
                "needs t1, t1ce, t2 and flair. Use --allow-missing to segment it anyway (the model was "
                "trained with sequences dropped; the result will be flagged as less reliable)"
            )
        reason = f"predicted without {', '.join(missing)} (treated as zeros); less reliable"
        log.warning("%s: %s", study.case_id, reason)
        return reason

    def _logits_with_fallback(
        self, volume: torch.Tensor, progress: ProgressFn, cancel: CancelToken, notes: list[str]
    ) -> tuple[torch.Tensor, torch.device]:
        """(1, 4, x, y, z) at model resolution -> (1, 3, x, y, z) float32 CPU logits, and the device used."""
        padded = [n + (-n) % self.divisor for n in volume.shape[2:]]
        roi = tuple(min(r, n) for r, n in zip(self.windows.roi, padded))  # halve what is really used
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
        return self._logits(volume, fallback, cpu, self.windows.roi, progress, cancel), cpu

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
                                                                                self.windows.overlap))
                out = _sliding_window(flipped, window, counted, self.windows)
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


def _windows_from_card(card: Any) -> WindowSettings:
    """The card's `inference` mapping (roi, overlap, mode) where it has one; else the defaults."""
    settings: Mapping[str, Any] = getattr(card, "inference", None) or {}
    try:
        side = round(DEFAULT_ROI_MM / float(card.resolution_mm))
        roi = settings.get("roi", side)
        roi = (int(roi),) * 3 if isinstance(roi, (int, float)) else tuple(int(n) for n in roi)
        windows = WindowSettings(roi=roi, overlap=float(settings.get("overlap", DEFAULT_OVERLAP)),  # type: ignore[arg-type]
                                 mode=str(settings.get("mode", "gaussian")))
    except (TypeError, ValueError) as error:
        raise ModelError(f"bad inference settings {dict(settings)} in the model card: {error}") from None
    if len(windows.roi) != 3 or min(windows.roi) < 1 or not 0 <= windows.overlap < 1:
        raise ModelError(f"bad inference settings {dict(settings)} in the model card")
    return windows


def _region_order(card: Any) -> list[int]:
    """Indices that put the network's output channels in REGIONS order."""
    regions = tuple(getattr(card, "regions", REGIONS))
    if sorted(regions) != sorted(REGIONS):
        raise ModelError(f"the model card lists regions {list(regions)}; BrainSeg needs {list(REGIONS)}")
    return [regions.index(name) for name in REGIONS]


def _lap(since: float) -> float:
    return round(time.perf_counter() - since, 3)


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
