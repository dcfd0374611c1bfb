"""Brain extraction (skull stripping) for raw head MRI: classical, CPU-fast, nothing to download.

Two steps, on one T1-like image (T1 is best, T1ce and FLAIR work; T2 less well):
1. a deformable surface in the manner of FSL's BET (`core/brain_surface.py`) grows from a
   sphere inside the brain until it meets the dark gap of CSF and bone under the skull; it
   starts at the centre of the head's top `cranium_mm` (so a neck in the field of view does not
   pull it down) and `fractional_threshold` sets where it stops (smaller: a larger brain);
2. inside the surface, tissue brighter than `tissue_threshold` (0 = background, 1 = the brain's
   level) but darker than `fat_threshold` (scalp fat and marrow, which thick slices blur into
   the brain's edge so that the surface leaks into them) is eroded by `neck_erosion_mm`, which
   cuts the brainstem from the neck and face that the surface may have taken in; the largest
   part, grown back, holes filled and closed by `closing_mm`, plus the bright parts it mostly
   surrounds (an enhancing lesion), is the brain. `adjust_mm` finally grows (> 0) or shrinks (< 0) it.
The morphology runs on a `working_mm` copy for speed. `erode_mask` / `dilate_mask` let a user
adjust a mask by hand (the GUI's erode / dilate buttons).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from brainseg_gui.core.brain_surface import fit_surface, icosphere, inside_surface
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.core.study import Grid

log = logging.getLogger(__name__)

#: A bright part is kept (as a lesion, not scalp) when the brain borders more than this share of it.
ENCLOSED_FRACTION = 0.5

METHOD = "BET-style deformable surface + morphological neck cut (BrainSeg, classical, CPU)"


@dataclass(frozen=True)
class BrainExtractionParams:
    """Settings of `extract_brain`. Distances in mm; thresholds as fractions (see module doc)."""

    fractional_threshold: float = 0.5
    iterations: int = 500
    cranium_mm: float = 120.0
    tissue_threshold: float = 0.35
    #: Tissue brighter than this (same scale as tissue_threshold) is fat or marrow, not brain; 0: off.
    fat_threshold: float = 1.6
    neck_erosion_mm: float = 5.0
    closing_mm: float = 3.0
    adjust_mm: float = 0.0
    working_mm: float = 2.0
    #: Where the surface starts (RAS mm); None: the centre of the head's top `cranium_mm`.
    centre_ras: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "centre_ras":
                if value is not None and (len(value) != 3 or not np.all(np.isfinite(value))):
                    raise BrainSegError(f"brain extraction: centre_ras must be three numbers (mm), got {value}")
            elif not np.isfinite(value) or (value < 0 and item.name != "adjust_mm"):
                raise BrainSegError(f"brain extraction: {item.name} must be a non-negative number, got {value}")
        if not 0 < self.fractional_threshold < 1 or not 0 < self.tissue_threshold < 1:
            raise BrainSegError(f"brain extraction: fractional_threshold ({self.fractional_threshold}) and "
                                f"tissue_threshold ({self.tissue_threshold}) must lie between 0 and 1")
        if 0 < self.fat_threshold <= 1:
            raise BrainSegError(f"brain extraction: fat_threshold ({self.fat_threshold}) must be 0 (off) or "
                                "above 1 (brighter than the brain's level)")
        if self.iterations < 1:
            raise BrainSegError(f"brain extraction: iterations must be at least 1, got {self.iterations}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BrainExtractionParams:
        """Parameters from keyword values (e.g. a prepare record); unknown names are an error."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BrainSegError(f"brain extraction: unknown parameters {unknown}; known: {sorted(known)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if name == "centre_ras":
                converted[name] = None if value is None else tuple(float(v) for v in value)
            elif name == "iterations":
                converted[name] = int(value)
            else:
                converted[name] = float(value)
        return cls(**converted)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["centre_ras"] = None if self.centre_ras is None else list(self.centre_ras)
        return values


def extract_brain(image: np.ndarray, grid: Grid, *, cancel: CancelToken | None = None,
                  **params: Any) -> np.ndarray:
    """Boolean brain mask (i, j, k) on `grid` of a T1-like head image (see the module docstring).

    Keyword arguments are the fields of `BrainExtractionParams`. Raises BrainSegError for an
    empty image or bad parameters, Cancelled (checked every surface iteration and between the
    steps) when `cancel` is set.
    """
    settings = BrainExtractionParams.from_dict(params)
    if image.shape != grid.shape:
        raise BrainSegError(f"brain extraction: image shape {image.shape} is not the grid's {grid.shape}")
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    factors = _factors(grid.spacing, settings.working_mm)
    small = _block_mean(image, factors)
    small_grid = Grid(small.shape, grid.affine @ np.diag([*factors, 1.0]))
    spacing = small_grid.spacing
    low, high = (float(v) for v in np.percentile(small, [2, 98]))
    if high <= low:
        raise BrainSegError(f"brain extraction: the image is flat (2nd and 98th percentiles {low:g}, {high:g})")
    centre, radius, level = _start(small, small_grid, low, high, settings)
    sphere = icosphere(4)
    # The surface moves on the full-resolution image; only its mask is drawn on the coarse grid.
    centre_full = (centre * np.array(factors)) + (np.array(factors) - 1) / 2.0
    radii = fit_surface(image, grid.spacing, centre_full, np.full(len(sphere.directions), radius / 2.0),
                        sphere=sphere, low=low, high=level, bt=settings.fractional_threshold,
                        iterations=settings.iterations, cancel=cancel)
    if cancel is not None:
        cancel.raise_if_cancelled()
    surface = inside_surface(small.shape, spacing, centre, sphere, radii)
    smooth = ndimage.gaussian_filter(small, [1.0 / s for s in spacing])
    tissue = surface & (smooth > low + settings.tissue_threshold * (level - low))
    bright = np.zeros_like(surface)
    if settings.fat_threshold > 0:
        bright = surface & (smooth >= low + settings.fat_threshold * (level - low))
        tissue &= ~bright
    brain = _neck_cut(tissue, surface, spacing, settings)
    if bright.any():
        brain = _add_enclosed(brain, bright)
    if factors != (1, 1, 1):
        brain = _upsample(brain, factors, grid.shape) & inside_surface(
            grid.shape, grid.spacing, centre_full, sphere, radii)
    if settings.adjust_mm > 0:
        brain = dilate_mask(brain, grid, settings.adjust_mm)
    elif settings.adjust_mm < 0:
        brain = erode_mask(brain, grid, -settings.adjust_mm)
    if not brain.any():
        raise BrainSegError("brain extraction found no brain; try a lower fractional_threshold or "
                            "neck_erosion_mm, or give centre_ras")
    log.info("brain extraction: %.0f mL (surface from %s, level %.4g, radius %.0f mm)",
             brain.sum() * grid.voxel_volume_ml, np.round(_to_ras(small_grid, centre), 1), level, radius)
    return brain


def erode_mask(mask: np.ndarray, grid: Grid, radius_mm: float) -> np.ndarray:
    """The mask shrunk by `radius_mm`: voxels closer than that to the outside are removed."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(mask, sampling=grid.spacing) > radius_mm


def dilate_mask(mask: np.ndarray, grid: Grid, radius_mm: float) -> np.ndarray:
    """The mask grown by `radius_mm`: voxels within that distance of it are added."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=grid.spacing) <= radius_mm


# -- steps ---------------------------------------------------------------------------------------


def _start(small: np.ndarray, grid: Grid, low: float, high: float,
           p: BrainExtractionParams) -> tuple[np.ndarray, float, float]:
    """Centre (voxels of `grid`), head radius (mm) and brain intensity level where the surface starts."""
    head = _largest(small > low + 0.1 * (high - low))
    if not head.any():
        raise BrainSegError("brain extraction: the image is empty (nothing above its background)")
    superior = _superior_mm(grid)
    cranium = head & (superior >= superior[head].max() - p.cranium_mm)
    if p.centre_ras is not None:
        centre = (np.linalg.inv(grid.affine) @ np.r_[np.asarray(p.centre_ras, dtype=float), 1.0])[:3]
    else:
        points = np.nonzero(cranium)
        weights = np.clip(small[points], low, high)
        centre = np.array([(axis * weights).sum() / weights.sum() for axis in points])
    radius = float((3.0 * cranium.sum() * grid.voxel_volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))
    spacing = np.array(grid.spacing)
    axes = [((np.arange(n) - c) * s) ** 2 for n, c, s in zip(small.shape, centre, spacing, strict=True)]
    distance2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    inside = (distance2 < radius ** 2) & (small > low) & (small < high)
    level = float(np.median(small[inside])) if inside.any() else (low + high) / 2.0
    return centre, radius, level


def _superior_mm(grid: Grid) -> np.ndarray:
    """World S coordinate (mm) of every voxel, by broadcasting (no index arrays)."""
    row = grid.affine[2]
    i, j, k = (np.arange(n, dtype=np.float32) for n in grid.shape)
    return (row[0] * i[:, None, None] + row[1] * j[None, :, None] + row[2] * k[None, None, :] + row[3])


def _neck_cut(tissue: np.ndarray, surface: np.ndarray, spacing: tuple[float, float, float],
              p: BrainExtractionParams) -> np.ndarray:
    """Erode, keep the largest part, grow back inside the surface, fill holes, close."""
    from scipy import ndimage

    brain = surface
    if p.neck_erosion_mm > 0 and tissue.any():
        core = _largest(ndimage.distance_transform_edt(tissue, sampling=spacing) > p.neck_erosion_mm)
        if core.any():
            reach = p.neck_erosion_mm + 0.5 * max(spacing)
            brain = _largest((ndimage.distance_transform_edt(~core, sampling=spacing) <= reach) & surface)
        else:
            log.warning("brain extraction: nothing is left after a %g mm erosion; neck cut skipped",
                        p.neck_erosion_mm)
    if p.closing_mm > 0:
        grown = ndimage.distance_transform_edt(~brain, sampling=spacing) <= p.closing_mm
        brain = brain | ((ndimage.distance_transform_edt(grown, sampling=spacing) > p.closing_mm) & surface)
    return fill_holes(brain)


def _add_enclosed(brain: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """`brain` plus the bright parts (an enhancing tumour, vessels) that brain mostly surrounds.

    Scalp fat and marrow lie against the dark skull and touch the brain only along thin
    partial-volume seams; a lesion lies in the brain, which borders most of it.
    """
    from scipy import ndimage

    labels, count = ndimage.label(bright & ~brain)
    if count == 0:
        return brain
    border = ndimage.grey_dilation(labels, size=(3, 3, 3))
    border[labels > 0] = 0
    touching = np.bincount(border[brain].ravel(), minlength=count + 1)
    total = np.bincount(border.ravel(), minlength=count + 1)
    keep = touching > ENCLOSED_FRACTION * total
    keep[0] = False
    return fill_holes(brain | keep[labels])


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def _to_ras(grid: Grid, voxel: np.ndarray) -> np.ndarray:
    return grid.affine[:3, :3] @ voxel + grid.affine[:3, 3]


def _factors(spacing: tuple[float, float, float], working_mm: float) -> tuple[int, int, int]:
    """Whole-voxel block sizes that bring each axis near `working_mm` (never finer than it is)."""
    return tuple(max(1, round(working_mm / s)) if working_mm > 0 else 1 for s in spacing)  # type: ignore[return-value]


def _block_mean(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Average over blocks of `factors` voxels (the last partial block padded by repetition)."""
    if factors == (1, 1, 1):
        return array
    pad = [(0, (-n) % f) for n, f in zip(array.shape, factors, strict=True)]
    padded = np.pad(array, pad, mode="edge")
    shape: list[int] = []
    for n, f in zip(padded.shape, factors, strict=True):
        shape += [n // f, f]
    return padded.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def _upsample(mask: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """A block mask back on the full grid, with smooth (linearly interpolated) edges."""
    from scipy import ndimage

    soft = ndimage.zoom(mask.astype(np.float32), factors, order=1, grid_mode=True, mode="nearest")
    return soft[: shape[0], : shape[1], : shape[2]] > 0.5
