"""A prediction, and the pipeline around the network that makes one, in numpy (no torch).

Pipeline for one study (all arrays RAS inside, the study's own axis order outside):
prepare (brain crop, z-score) -> resample to the card's resolution -> [the network: logits at that
resolution, given by the caller] -> upsample the logits to the crop's own voxels -> sigmoid ->
threshold, nesting, small-ET relabelling (card) -> paste into the full array -> undo the reorientation.

Both ways of running the network share it: ml/predictor.py (torch, any device, sliding windows, TTA)
and ml/openvino_predictor.py (the cached OpenVINO network, without importing torch), so they differ
only in the logits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.labels import REGIONS, LabelConvention, from_regions
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.study import Grid, Study
from brainseg_gui.ml.model_card import NormalisationSettings
from brainseg_gui.ml.postprocess import PostprocessSettings, apply_region_steps
from brainseg_gui.ml.preprocess import model_shape, prepare, resize_linear

log = logging.getLogger(__name__)

#: Sliding-window defaults when the card names none: windows of 192 mm a side at the model's
#: resolution (96^3 voxels at 2 mm, 128^3 at 1.5 mm), so any brain crop (at most ~180 mm with its
#: margin) is one window: on the CPU one whole pass is faster than tiles (measured at 1.5 mm: two
#: 96^3 tiles took several times one 96x120x96 pass). A quarter overlap, Gaussian blending.
DEFAULT_ROI_MM = 192.0
DEFAULT_OVERLAP = 0.25

#: What runs the network: (1, 4, x, y, z) float32 input at the model's resolution, the progress and
#: cancel of this stage, and a list for notes to the user -> ((1, 3, x, y, z) float32 logits in the
#: card's region order, the device that ran them, as shown to the user).
NetworkLogits = Callable[[np.ndarray, ProgressFn, CancelToken, list[str]], tuple[np.ndarray, str]]


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


class Segmenter(Protocol):
    """What segments a study: the torch Predictor (ml/predictor.py) or the OpenVINO one (ml/openvino_predictor.py)."""

    @property
    def model_version(self) -> str: ...

    @property
    def device_description(self) -> str: ...

    def __call__(self, study: Study, *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                 keep_probabilities: bool = False) -> Prediction: ...


@dataclass(frozen=True)
class WindowSettings:
    """Sliding-window parameters, in voxels at the model's resolution."""

    roi: tuple[int, int, int] = (96, 96, 96)
    overlap: float = DEFAULT_OVERLAP
    mode: str = "gaussian"


@dataclass(frozen=True)
class InferenceSettings:
    """What a model card says about running its network and reading its output."""

    resolution_mm: float
    windows: WindowSettings
    region_order: tuple[int, ...]
    postprocess: PostprocessSettings
    model_version: str
    normalisation: NormalisationSettings = field(default_factory=NormalisationSettings)

    @classmethod
    def from_card(cls, card: Any) -> InferenceSettings:
        """The card's sections, typed: inference (windows), postprocess and normalisation."""
        return cls(float(card.resolution_mm), windows_from_card(card), region_order(card),
                   PostprocessSettings.from_card(getattr(card, "postprocess", None)),
                   str(getattr(card, "version", "unknown")),
                   NormalisationSettings.from_card(getattr(card, "normalisation", None)))


def segment(
    study: Study,
    network: NetworkLogits,
    settings: InferenceSettings,
    *,
    allow_missing: bool = False,
    tta: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    keep_probabilities: bool = False,
) -> Prediction:
    """Segment `study` with `network`; raises StudyLoadError for missing sequences unless allow_missing."""
    cancel = cancel or CancelToken()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    started = time.perf_counter()
    flag_reason = check_missing(study, allow_missing)

    progress(0.0, f"{study.case_id}: preparing the input")
    cancel.raise_if_cancelled()
    prepared = prepare(study, settings.normalisation)
    crop_shape = tuple(prepared.volume.shape[1:])
    volume = resize_linear(prepared.volume, model_shape(crop_shape, prepared.spacing, settings.resolution_mm))
    seconds["prepare"] = _lap(started)

    cancel.raise_if_cancelled()
    network_started = time.perf_counter()
    logits, device = network(volume[None], sub_progress(progress, 0.1, 0.85), cancel, notes)
    logits = logits[0, list(settings.region_order)]
    seconds["network"] = _lap(network_started)

    cancel.raise_if_cancelled()
    progress(0.85, f"{study.case_id}: post-processing")
    post_started = time.perf_counter()
    logits = resize_linear(logits, crop_shape)
    voxel_mm3 = float(np.prod(prepared.spacing))
    # Tumour lies inside the brain: a voxel outside it (zero in every sequence) is never labelled,
    # so a stray ET logit in the background cannot grow WT over the whole crop through nesting.
    inside = fill_holes(prepared.brain)
    above = logits > _logit(settings.postprocess.threshold)  # sigmoid(x) > t, without a sigmoid per voxel
    regions_crop = apply_region_steps(above & inside[None], settings.postprocess.scaled_to(voxel_mm3))
    full_shape = prepared.reorientation.shape
    regions = np.zeros((3, *full_shape), dtype=bool)
    regions[(slice(None), *prepared.box)] = regions_crop
    regions = np.ascontiguousarray(prepared.reorientation.undo(regions))
    kept = None
    if keep_probabilities:
        kept = np.zeros((3, *full_shape), dtype=np.float16)
        kept[(slice(None), *prepared.box)] = 0.5 + 0.5 * np.tanh(0.5 * logits)  # the sigmoid, without overflow
        kept = np.ascontiguousarray(prepared.reorientation.undo(kept))
    seconds["postprocess"] = _lap(post_started)
    seconds["total"] = _lap(started)
    progress(1.0, f"{study.case_id}: done")
    return Prediction(
        case_id=study.case_id,
        grid=study.grid,
        regions=regions,
        probabilities=kept,
        model_version=settings.model_version,
        device=device,
        tta=tta,
        missing=study.missing,
        flagged=bool(flag_reason),
        flag_reason=flag_reason,
        seconds=seconds,
        notes=tuple(notes),
    )


def check_missing(study: Study, allow_missing: bool) -> str:
    """Why a study missing sequences is flagged ("" when none is missing); StudyLoadError unless allowed."""
    missing = study.missing
    if not missing:
        return ""
    sources = ", ".join(str(p) for p in study.sources.values()) or "memory"
    if not allow_missing:
        raise StudyLoadError(
            f"case {study.case_id!r} ({sources}) lacks the sequence(s) {', '.join(missing)}; the model "
            "needs t1, t1ce, t2 and flair. Use --allow-missing to segment it anyway (the model was "
            "trained with sequences dropped; the result will be flagged as less reliable)"
        )
    reason = f"predicted without {', '.join(missing)} (treated as zeros); less reliable"
    log.warning("%s: %s", study.case_id, reason)
    return reason


def windows_from_card(card: Any) -> WindowSettings:
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


def region_order(card: Any) -> tuple[int, ...]:
    """Indices that put the network's output channels in REGIONS order."""
    regions = tuple(getattr(card, "regions", REGIONS))
    if sorted(regions) != sorted(REGIONS):
        raise ModelError(f"the model card lists regions {list(regions)}; BrainSeg needs {list(REGIONS)}")
    return tuple(regions.index(name) for name in REGIONS)


def _logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))


def _lap(since: float) -> float:
    return round(time.perf_counter() - since, 3)
