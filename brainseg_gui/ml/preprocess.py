"""Input preparation shared exactly by training and inference.

Steps: the four sequences (missing ones zero) -> RAS axis order -> crop to the brain's bounding box
(BraTS images are skull-stripped: brain = any sequence non-zero) -> per-sequence robust z-score inside
the brain -> resample to the model's isotropic resolution (trilinear, `resize_linear`).

No torch here: the OpenVINO prediction path runs without importing it (ml/openvino_predictor.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.study import SEQUENCES, Study
from brainseg_gui.ml.model_card import NormalisationSettings

#: The training recipe's input (every card trained here records it; see model_card.py).
DEFAULT_NORMALISATION = NormalisationSettings()


@dataclass(frozen=True)
class PreparedInput:
    """A study ready for the network, and what is needed to put predictions back on its grid.

    volume: (4, x, y, z) float32 at the study's own resolution, RAS order, cropped to `box`.
    box: the crop inside the RAS-ordered full array. spacing: mm along RAS axes.
    """

    volume: np.ndarray
    brain: np.ndarray
    box: tuple[slice, slice, slice]
    spacing: tuple[float, float, float]
    reorientation: Reorientation
    present: tuple[bool, bool, bool, bool]


def brain_box(brain: np.ndarray, margin: int = DEFAULT_NORMALISATION.box_margin) -> tuple[slice, slice, slice]:
    """Bounding box of a boolean mask, grown by `margin` voxels and clipped to the array."""
    if not brain.any():
        raise StudyLoadError("the study is empty: every sequence is zero everywhere")
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(brain.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, brain.shape[axis])))
    return box[0], box[1], box[2]


def normalise_channels(volume: np.ndarray, brain: np.ndarray,
                       clip_percentiles: tuple[float, float] = DEFAULT_NORMALISATION.clip_percentiles) -> np.ndarray:
    """Per channel: clip to brain percentiles, z-score inside the brain, zero outside. float32."""
    out = np.zeros_like(volume, dtype=np.float32)
    for channel in range(volume.shape[0]):
        values = volume[channel][brain]
        if values.size == 0 or not np.any(values):
            continue
        low, high = np.percentile(values, clip_percentiles)
        clipped = np.clip(values, low, high)
        std = float(clipped.std())
        out[channel][brain] = (clipped - float(clipped.mean())) / (std if std > 1e-6 else 1.0)
    return out


def prepare(study: Study, normalisation: NormalisationSettings = DEFAULT_NORMALISATION) -> PreparedInput:
    """Study -> cropped, normalised (4, x, y, z) RAS volume at the study's resolution, made as the
    model card's `normalisation` says (training uses the defaults and records them).

    The brain box is found first and only the crop is copied: reorienting a single image is a
    view (flips and transposes), so the full 4-channel RAS stack is never built (that copy was
    ~0.7 s of a 240x240x155 case on 2 cores, more than the rest of the preparation).
    """
    reorientation = Reorientation(study.grid)
    brain_own = np.zeros(study.grid.shape, dtype=bool)
    for image in study.images.values():
        brain_own |= image != 0
    brain = reorientation.apply(brain_own)  # a view
    box = brain_box(brain, normalisation.box_margin)
    brain_cropped = np.ascontiguousarray(brain[box])
    cropped = np.zeros((len(SEQUENCES), *brain_cropped.shape), dtype=np.float32)
    for channel, name in enumerate(SEQUENCES):
        if name in study.images:
            cropped[channel] = reorientation.apply(study.images[name])[box]
    present = tuple(name in study.images for name in ("t1", "t1ce", "t2", "flair"))
    return PreparedInput(
        volume=normalise_channels(cropped, brain_cropped, normalisation.clip_percentiles),
        brain=brain_cropped,
        box=box,
        spacing=reorientation.spacing,
        reorientation=reorientation,
        present=present,  # type: ignore[arg-type]
    )


def model_shape(shape: tuple[int, ...], spacing: tuple[float, ...], resolution_mm: float) -> tuple[int, int, int]:
    """Size of a crop of `shape` voxels at `spacing` when resampled to `resolution_mm` isotropic."""
    return tuple(max(1, round(n * s / resolution_mm)) for n, s in zip(shape, spacing))  # type: ignore[return-value]


def resize_linear(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(..., x, y, z) float32 -> (..., *size): torch's trilinear interpolation (align_corners=False) in numpy.

    One axis at a time (linear interpolation is separable): each output voxel samples its source at
    (i + 0.5) * n_in / n_out - 0.5, clamped to the edges, as torch does; the two agree to ~1e-4 (float32
    rounding). Written here, not taken from scipy (ndimage.zoom with grid_mode is ~10x slower on a
    case) or torch (so a prediction need not import it): ~0.1 s for a case's logits on one core.
    """
    out = np.asarray(array, dtype=np.float32)
    for axis, n_out in zip(range(out.ndim - 3, out.ndim), size):
        out = _resize_axis(out, axis, int(n_out))
    return out


def _resize_axis(array: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    n_in = array.shape[axis]
    if n_in == n_out:
        return array
    source = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    below = np.minimum(np.floor(source).astype(np.intp), n_in - 1)
    above = np.minimum(below + 1, n_in - 1)
    shape = [1] * array.ndim
    shape[axis] = n_out
    weight = (source - below).astype(np.float32).reshape(shape)
    out = np.take(array, below, axis=axis)
    step = np.take(array, above, axis=axis)
    step -= out
    step *= weight
    out += step
    return out
