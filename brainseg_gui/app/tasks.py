"""The plain functions the viewer runs in workers: open a study, segment it and compare with truth.

Each takes ``progress`` and ``cancel`` (see `core.progress`) and raises ``Cancelled``; none touches a
widget. torch is imported only when a segmentation is first asked for, so the window starts fast.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.region_codes import BRATS_LABEL_CODE
from brainseg_gui.core.labels import REGIONS, LabelConvention, from_regions, to_regions
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.progress import CancelToken, ProgressFn, sub_progress
from brainseg_gui.core.study import Study

#: Name shown for the synthetic demo study, so nobody mistakes it for a patient.
DEMO_NAME = "Demo (synthetic phantom, not a patient)"


def open_study(path: Path, *, progress: ProgressFn, cancel: CancelToken) -> DisplayVolume:
    """Load a study from any supported path (folder, file of a case, 4D NIfTI, DICOM folder)."""
    from brainseg_gui.core.errors import GridMismatchError
    from brainseg_gui.core.io import load_study

    try:
        study = load_study(Path(path), progress=sub_progress(progress, 0.0, 0.85), cancel=cancel)
    except GridMismatchError:
        # Straight from the scanner: sequences on their own grids. Shown resampled onto one grid
        # (the study's warnings say so); the readiness check then offers to prepare it properly.
        study = load_study(Path(path), allow_resample=True, progress=sub_progress(progress, 0.0, 0.85),
                           cancel=cancel)
    cancel.raise_if_cancelled()
    progress(0.9, "Preparing the views")
    return DisplayVolume.from_study(study)


def open_demo(*, progress: ProgressFn, cancel: CancelToken) -> DisplayVolume:
    """The built-in synthetic study (a deterministic phantom with a labelled tumour)."""
    from brainseg_gui.core.phantom import demo_study

    progress(0.1, "Building the demo phantom")
    study = demo_study()
    cancel.raise_if_cancelled()
    progress(0.8, "Preparing the views")
    return DisplayVolume.from_study(study)


class PredictorSlot:
    """Builds the predictor on first use (in a worker: loading torch and weights takes seconds)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._predictor: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._predictor is None:
                self._predictor = self._factory()
            return self._predictor

    @property
    def loaded(self) -> Any:
        """The predictor if already built, else None (never builds)."""
        return self._predictor


def default_predictor_factory(model_dir: Path | None = None) -> Callable[[], Any]:
    """The shipped model (or `model_dir`) on the best device available."""

    def build() -> Any:
        from brainseg_gui.ml.predictor import Predictor

        # allow_missing: a study without some sequence is segmented and the result flagged (the
        # viewer says so); a GUI user is never told to find a command-line flag.
        return Predictor.from_model_dir(model_dir, device="auto", allow_missing=True)

    return build


@dataclass(frozen=True)
class Segmentation:
    """A finished segmentation, ready for the views and the results table.

    labels: BraTS labels (0/1/2/4) in the study's own axis order, the mask editing starts from.
    code: RAS region code of `labels` (see `region_codes`), made here in the worker, so the GUI
    re-orients nothing. regions: (3, *grid.shape) bool in the study's own axis order;
    regions_ras: the same in RAS order. volumes_ml: per region.
    metrics: region -> object with .dice and .hd95 when the study has a ground truth, else None.
    probabilities: (3, *grid.shape) float16 WT/TC/ET in the study's own axis order (the Click tool's
    prior), or None when the predictor does not keep them.
    """

    labels: np.ndarray
    code: np.ndarray
    regions: np.ndarray
    regions_ras: np.ndarray
    volumes_ml: Mapping[str, float]
    metrics: Mapping[str, Any] | None
    model_version: str
    device: str
    seconds: float
    probabilities: np.ndarray | None = None
    flag: str = ""  # why the result is less reliable (missing sequences), or ""


def segment(volume: DisplayVolume, slot: PredictorSlot, *, progress: ProgressFn,
            cancel: CancelToken) -> Segmentation:
    """Run the model on the study, then measure against its ground truth when it has one."""
    import time

    started = time.perf_counter()
    progress(0.0, "Loading the model")
    predictor = slot.get()
    cancel.raise_if_cancelled()
    study: Study = volume.study
    step = sub_progress(progress, 0.05, 0.85)
    if keeps_probabilities(predictor):
        prediction = predictor(study, progress=step, cancel=cancel, keep_probabilities=True)
    else:
        prediction = predictor(study, progress=step, cancel=cancel)
    cancel.raise_if_cancelled()
    regions = np.asarray(prediction.regions, dtype=bool)
    voxel_ml = study.grid.voxel_volume_ml
    volumes = {name: float(regions[index].sum()) * voxel_ml for index, name in enumerate(REGIONS)}
    metrics = None
    if study.labels is not None and study.label_convention is not None:
        from brainseg_gui.core.metrics import evaluate_regions

        progress(0.9, "Comparing with the ground truth")
        truth = to_regions(study.labels, study.label_convention)
        metrics = evaluate_regions(regions, truth, study.grid.spacing)
    cancel.raise_if_cancelled()
    reorient = Reorientation(study.grid)
    regions_ras = reorient.apply(regions)
    labels = from_regions(regions, LabelConvention.BRATS)
    progress(1.0, "Done")
    return Segmentation(
        labels=labels,
        code=np.ascontiguousarray(reorient.apply(BRATS_LABEL_CODE[labels])),
        regions=regions,
        regions_ras=regions_ras,
        volumes_ml=volumes,
        metrics=metrics,
        model_version=str(prediction.model_version),
        device=str(prediction.device),
        seconds=time.perf_counter() - started,
        probabilities=getattr(prediction, "probabilities", None),
        flag=str(getattr(prediction, "flag_reason", "") or ""),
    )


def keeps_probabilities(predictor: Callable[..., Any]) -> bool:
    """Whether a predictor can be asked for its probabilities (the real one can; a test double or a
    plug-in that predates the Click tool may not, and is then called as before)."""
    try:
        parameters = inspect.signature(predictor).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "keep_probabilities" or p.kind is p.VAR_KEYWORD for p in parameters)
