"""Correct a tumour mask by clicking: each click re-segments a box around it, in 3D, in well under a second.

No network is retrained and none runs per click. The model's region probabilities are the prior,
the four sequences the evidence, the click the user's word; a random walker (scikit-image) decides
every voxel of a 40 mm box around the click:

- a positive click on region R (WT, TC, ET) where the mask misses: seeds "R" are the click (a 2 mm
  ball) and the current R inside the box, seeds "not R" the box's faces outside R and everything
  outside the brain; voxels the walker gives to R and that connect to the click are added;
- a negative click on R where the mask is wrong: seeds "not R" are the click and every voxel of the
  box outside R, seeds "R" the current R far from the click (over 10 mm) where the model is sure
  (p > 0.9); voxels of R the walker gives away and that connect to the click are removed;
- a box (two opposite corners): inside it R is re-segmented from the model's own confident voxels
  (p > 0.9 are R, p < 0.1 and the box faces are not R).

A label click (NCR, ED, ET) adds that tissue (NCR: core without enhancement; ED: whole tumour
without core) or removes it (to background). Regions stay nested (ET in TC in WT) after every
click. Why a random walker: it needs no training (CPU training is slow here), follows the image
edges in all three dimensions, accepts the model's probability as one more feature, and solves a
40 mm box in a few tenths of a second on two cores. Without probabilities (a hand-drawn mask) the
sequences alone guide it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.errors import BrainSegError, StudyLoadError
from brainseg_gui.core.labels import REGIONS, LabelConvention, from_regions, to_regions
from brainseg_gui.core.read_guard import read_small_bytes

#: What a click may name: a region, or a tissue label.
CLICK_TARGETS = ("WT", "TC", "ET", "NCR", "ED")
#: Half the side of the box a click re-segments (mm).
BOX_HALF_MM = 20.0
#: Radius of the click's own seed (mm).
CLICK_RADIUS_MM = 2.0
#: A negative click keeps the region this far from the click where the model is sure.
KEEP_DISTANCE_MM = 6.0
#: A positive click does not spread this far from the click into what the model is sure is not R.
GROW_DISTANCE_MM = 8.0
#: Random walker edge sensitivity (on features scaled to about unit spread).
BETA = 500.0
#: Weight of the model's probability among the features (the sequences weigh 1 each).
PRIOR_WEIGHT = 2.0
Box = tuple[slice, slice, slice]


class ClickError(BrainSegError):
    """A click that cannot be applied (outside the grid, unknown target, malformed file)."""


@dataclass(frozen=True)
class Click:
    """One interaction: a voxel of the study's grid, what it names, and whether it adds or removes."""

    voxel: tuple[int, int, int]
    label: str
    positive: bool = True
    corner: tuple[int, int, int] | None = None  # a box: `voxel` and `corner` are opposite corners

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"voxel": list(self.voxel), "label": self.label, "positive": self.positive}
        if self.corner is not None:
            out["corner"] = list(self.corner)
        return out


def parse_click(entry: Any, where: str = "click") -> Click:
    """A click from its JSON form; ClickError naming the entry and the value for anything else."""
    if not isinstance(entry, Mapping):
        raise ClickError(f"{where}: expected an object with voxel, label and positive, got {entry!r}")
    voxel = _voxel(entry.get("voxel"), f"{where}: voxel")
    label = entry.get("label")
    if not isinstance(label, str) or label.upper() not in CLICK_TARGETS:
        raise ClickError(f"{where}: unknown label {label!r}; expected one of {', '.join(CLICK_TARGETS)}")
    positive = entry.get("positive", True)
    if not isinstance(positive, bool):
        raise ClickError(f"{where}: positive must be true or false, got {positive!r}")
    corner = None if entry.get("corner") is None else _voxel(entry.get("corner"), f"{where}: corner")
    return Click(voxel, label.upper(), positive, corner)


def read_clicks(path: Path) -> list[Click]:
    """The clicks of a CLICKS.json file (a list), in order."""
    try:
        data = json.loads(read_small_bytes(Path(path), "clicks file").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ClickError(f"{path} is not a JSON file of clicks (it holds binary data)") from exc
    except StudyLoadError as exc:
        raise ClickError(str(exc)) from exc
    except ValueError as exc:
        raise ClickError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise ClickError(f"{path}: expected a non-empty list of clicks, got {type(data).__name__}")
    return [parse_click(entry, f"{path} click {number}") for number, entry in enumerate(data, start=1)]


def check_inside(clicks: Sequence[Click], shape: Sequence[int]) -> None:
    """ClickError for the first click (or box corner) outside a grid of `shape`."""
    for number, click in enumerate(clicks, start=1):
        for point in (click.voxel, click.corner):
            if point is not None and not all(0 <= v < n for v, n in zip(point, shape)):
                raise ClickError(f"click {number} at voxel {list(point)} lies outside the grid "
                                 f"{'x'.join(map(str, shape))}")


def _voxel(value: Any, where: str) -> tuple[int, int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ClickError(f"{where} must be three whole numbers [i, j, k], got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


@dataclass(frozen=True)
class RefineContext:
    """What every click of one study reads: features scaled once, the model's prior, the voxel size.

    features: (C, i, j, k) float32 (the present sequences, z-scored inside the brain);
    probabilities: (3, i, j, k) WT/TC/ET in [0, 1] or None; brain: bool (i, j, k).
    """

    features: np.ndarray
    probabilities: np.ndarray | None
    brain: np.ndarray
    spacing: tuple[float, float, float]

    @classmethod
    def build(cls, images: Mapping[str, np.ndarray], spacing: Sequence[float],
              probabilities: np.ndarray | None = None) -> RefineContext:
        """From the study's sequences ({name: (i, j, k) array}) and optional (3, ...) probabilities."""
        arrays = [np.asarray(a, dtype=np.float32) for a in images.values()]
        if not arrays:
            raise ClickError("no image to refine on")
        brain = np.zeros(arrays[0].shape, dtype=bool)
        for array in arrays:
            brain |= array != 0
        features = np.empty((len(arrays), *arrays[0].shape), dtype=np.float32)
        for index, array in enumerate(arrays):
            inside = array[brain] if brain.any() else array.ravel()
            low, high = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
            scale = float(high - low) or 1.0
            features[index] = np.clip((array - float(low)) / scale, -0.5, 1.5) * 4.0  # ~unit steps per edge
        prior = None if probabilities is None else np.asarray(probabilities, dtype=np.float32)
        if prior is not None and prior.shape != (3, *arrays[0].shape):
            raise ClickError(f"probabilities of shape {prior.shape} do not fit the images {arrays[0].shape}")
        return cls(features, prior, brain, (float(spacing[0]), float(spacing[1]), float(spacing[2])))


def apply_click(labels: np.ndarray, click: Click, context: RefineContext,
                convention: LabelConvention = LabelConvention.BRATS) -> tuple[np.ndarray, Box]:
    """The label map after one click (a new array) and the box it may have changed."""
    shape = labels.shape
    check_inside([click], shape)
    regions = to_regions(labels, convention)
    region = _region_of(click.label)
    if click.corner is not None:
        box = tuple(slice(min(a, b), max(a, b) + 1) for a, b in zip(click.voxel, click.corner))
        changed = _resegment_box(regions[region], box, region, context)  # type: ignore[arg-type]
        regions = _nest(regions, region, changed, add=True, box=box)  # type: ignore[arg-type]
        return from_regions(regions, convention), box  # type: ignore[return-value]
    box = _box_around(click.voxel, shape, context.spacing)
    current = _tissue_mask(regions, click.label) if not click.positive else regions[region]
    if click.positive:
        change = _grow(current[box], click, box, region, context)
    else:
        change = _shrink(current[box], click, box, region, context)
    full = np.zeros(shape, dtype=bool)
    full[box] = change
    if click.positive:
        regions = _add(regions, click.label, full)
    else:
        regions = _remove(regions, click.label, full)
    return from_regions(regions, convention), box


def _region_of(label: str) -> int:
    return {"WT": 0, "TC": 1, "ET": 2, "NCR": 1, "ED": 0}[label]


def _tissue_mask(regions: np.ndarray, label: str) -> np.ndarray:
    """What a negative click on `label` may take away: a region, or one tissue class."""
    if label == "NCR":
        return regions[1] & ~regions[2]
    if label == "ED":
        return regions[0] & ~regions[1]
    return regions[REGIONS.index(label)]


def _add(regions: np.ndarray, label: str, voxels: np.ndarray) -> np.ndarray:
    out = regions.copy()
    if label in ("WT", "ED"):
        out[0] |= voxels
        if label == "ED":
            out[1] &= ~voxels
            out[2] &= ~voxels
    elif label in ("TC", "NCR"):
        out[0] |= voxels
        out[1] |= voxels
        if label == "NCR":
            out[2] &= ~voxels
    else:
        out[:, voxels] = True
    return out


def _remove(regions: np.ndarray, label: str, voxels: np.ndarray) -> np.ndarray:
    out = regions.copy()
    if label in ("NCR", "ED"):  # a wrong tissue goes to background
        out[:, voxels] = False
    else:
        index = REGIONS.index(label)
        out[index:, voxels] = False  # nested: removing TC removes its ET too
    return out


def _nest(regions: np.ndarray, region: int, mask: np.ndarray, *, add: bool, box: Box) -> np.ndarray:
    out = regions.copy()
    out[region][box] = mask[box]
    for outer in range(region):  # what R holds, its outer regions hold too
        out[outer] |= out[region]
    for inner in range(region + 1, 3):  # and nothing inner lies outside it
        out[inner] &= out[region]
    return out


def _box_around(voxel: Sequence[int], shape: Sequence[int], spacing: Sequence[float]) -> Box:
    half = [max(2, math.ceil(BOX_HALF_MM / s)) for s in spacing]
    return tuple(slice(max(0, v - h), min(n, v + h + 1)) for v, h, n in zip(voxel, half, shape))  # type: ignore[return-value]


def _distance_mm(box: Box, voxel: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    axes = [(np.arange(s.start, s.stop) - v) * d for s, v, d in zip(box, voxel, spacing)]
    return np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)


def _faces(shape: Sequence[int]) -> np.ndarray:
    faces = np.zeros(tuple(shape), dtype=bool)
    faces[[0, -1], :, :] = True
    faces[:, [0, -1], :] = True
    faces[:, :, [0, -1]] = True
    return faces


def _walk(seeds: np.ndarray, box: Box, region: int, context: RefineContext) -> np.ndarray:
    """Random walker over the box's features (and prior): True where label 1 wins."""
    from skimage.segmentation import random_walker

    features = context.features[(slice(None), *box)]
    if context.probabilities is not None:
        prior = context.probabilities[region][box][None] * (4.0 * PRIOR_WEIGHT)
        features = np.concatenate([features, prior.astype(np.float32)])
    if not (seeds == 1).any():
        return np.zeros(seeds.shape, dtype=bool)
    if not (seeds == 2).any():
        return np.ones(seeds.shape, dtype=bool)
    data = np.moveaxis(features, 0, -1)
    import warnings

    with warnings.catch_warnings():  # "probability outside [0, 1] within tolerance": harmless here
        warnings.simplefilter("ignore", UserWarning)
        result = random_walker(data, seeds.astype(np.int32), beta=BETA, mode="cg_j", tol=1e-2,
                               channel_axis=-1, spacing=context.spacing)
    return np.asarray(result == 1)


def _connected_to_click(mask: np.ndarray, click: Click, box: Box) -> np.ndarray:
    from scipy import ndimage

    labelled, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    local = tuple(v - s.start for v, s in zip(click.voxel, box))
    ball = labelled[tuple(slice(max(0, c - 1), c + 2) for c in local)]
    keep = np.unique(ball[ball > 0])
    return np.isin(labelled, keep) if keep.size else np.zeros(mask.shape, dtype=bool)


def _grow(current: np.ndarray, click: Click, box: Box, region: int, context: RefineContext) -> np.ndarray:
    distance = _distance_mm(box, click.voxel, context.spacing)
    near = distance <= CLICK_RADIUS_MM
    seeds = np.zeros(current.shape, dtype=np.int8)
    seeds[_faces(current.shape) & ~current] = 2
    seeds[~context.brain[box]] = 2
    if context.probabilities is not None:
        seeds[(context.probabilities[region][box] < 0.05) & (distance > GROW_DISTANCE_MM) & ~current] = 2
    seeds[current] = 1
    seeds[near] = 1
    inside = _walk(seeds, box, region, context)
    added = (inside | near) & ~current
    return _connected_to_click(added | near, click, box) & ~current


def _shrink(current: np.ndarray, click: Click, box: Box, region: int, context: RefineContext) -> np.ndarray:
    distance = _distance_mm(box, click.voxel, context.spacing)
    near = distance <= CLICK_RADIUS_MM
    seeds = np.zeros(current.shape, dtype=np.int8)
    seeds[~current] = 1
    sure = current & (distance > KEEP_DISTANCE_MM)
    if context.probabilities is not None:
        sure &= context.probabilities[region][box] > 0.9
    seeds[sure] = 2
    seeds[_faces(current.shape) & current] = 2
    seeds[near] = 1
    gone = _walk(seeds, box, region, context) & current
    return _connected_to_click(gone | (near & current), click, box) & current


def _resegment_box(current: np.ndarray, box: Box, region: int, context: RefineContext) -> np.ndarray:
    """R inside the box from the model's confident voxels (or, without a prior, the current mask's core)."""
    out = current.copy()
    inner = current[box]
    seeds = np.zeros(inner.shape, dtype=np.int8)
    if context.probabilities is not None:
        prior = context.probabilities[region][box]
        seeds[prior < 0.1] = 2
        seeds[prior > 0.9] = 1
    else:
        from scipy import ndimage

        seeds[~ndimage.binary_dilation(inner, iterations=2)] = 2
        seeds[ndimage.binary_erosion(inner, iterations=2)] = 1
    seeds[_faces(inner.shape) & ~inner] = 2
    seeds[~context.brain[box]] = 2
    out[box] = _walk(seeds, box, region, context)
    return out
