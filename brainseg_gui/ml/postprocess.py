"""Post-processing of predicted regions as BraTS practice does it (numpy/scipy only).

Regions are bool arrays (3, x, y, z) in REGIONS order (WT, TC, ET). Steps, in order:
1. `make_nested`: ET inside TC inside WT, so the label map is consistent.
2. `remove_small_components` (off unless the card enables it): drop specks of WT far from the tumour;
   `tune_min_component` measures on validation cases whether that helps.
3. `relabel_small_et`: a tiny total ET is usually a false positive, and BraTS scores a false ET in a
   case without ET as Dice 0; below a threshold tuned on validation cases (`tune_et_threshold`) it
   becomes necrosis (stays TC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainseg_gui.core.dice import dice
from brainseg_gui.core.errors import ModelError

WT, TC, ET = 0, 1, 2

#: Candidate ET thresholds (voxels at 1 mm^3) tried by `tune_et_threshold`.
ET_CANDIDATES: tuple[int, ...] = (0, 25, 50, 100, 200, 300, 500, 750, 1000)


@dataclass(frozen=True)
class PostprocessSettings:
    """What the model card says about turning probabilities into regions.

    threshold: probability above which a voxel is in a region.
    et_min_voxels: total ET below this many 1 mm^3 voxels is relabelled as necrosis (0 = never).
    wt_min_component_voxels: WT components smaller than this (1 mm^3 voxels) are removed (0 = off).
    """

    threshold: float = 0.5
    et_min_voxels: int = 0
    wt_min_component_voxels: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ModelError(f"post-processing threshold must lie in (0, 1), got {self.threshold}")
        if self.et_min_voxels < 0 or self.wt_min_component_voxels < 0:
            raise ModelError(
                f"post-processing voxel counts must be >= 0, got et_min_voxels={self.et_min_voxels}, "
                f"wt_min_component_voxels={self.wt_min_component_voxels}"
            )

    @classmethod
    def from_card(cls, settings: Mapping[str, Any] | None) -> PostprocessSettings:
        """Read the card's `postprocess` mapping; unknown keys are an error (they would be ignored)."""
        settings = dict(settings or {})
        known = {"threshold", "et_min_voxels", "wt_min_component_voxels"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ModelError(f"unknown post-processing settings {unknown} in the model card; known: {sorted(known)}")
        try:
            return cls(
                threshold=float(settings.get("threshold", 0.5)),
                et_min_voxels=int(settings.get("et_min_voxels", 0)),
                wt_min_component_voxels=int(settings.get("wt_min_component_voxels", 0)),
            )
        except (TypeError, ValueError) as error:
            raise ModelError(f"bad post-processing settings {settings} in the model card: {error}") from None

    def scaled_to(self, voxel_volume_mm3: float) -> PostprocessSettings:
        """The voxel thresholds re-expressed for voxels of another volume (same mm^3 thresholds)."""
        def scale(n: int) -> int:
            return round(n / voxel_volume_mm3) if n else 0

        return PostprocessSettings(self.threshold, scale(self.et_min_voxels), scale(self.wt_min_component_voxels))


def _check(regions: np.ndarray) -> np.ndarray:
    if regions.ndim < 2 or regions.shape[0] != 3:
        raise ValueError(f"expected regions of shape (3, ...) in WT, TC, ET order, got {regions.shape}")
    return np.asarray(regions, dtype=bool)


def make_nested(regions: np.ndarray) -> np.ndarray:
    """Enforce ET <= TC <= WT by growing the outer regions (TC |= ET, WT |= TC). Returns a new array."""
    out = _check(regions).copy()
    out[TC] |= out[ET]
    out[WT] |= out[TC]
    return out


def relabel_small_et(regions: np.ndarray, min_voxels: int) -> np.ndarray:
    """If the total ET has fewer than `min_voxels` voxels, remove ET; those voxels stay TC (necrosis).

    Expects nested regions (call `make_nested` first). Returns a new array.
    """
    out = _check(regions).copy()
    et_voxels = int(out[ET].sum())
    if 0 < et_voxels < min_voxels:
        out[TC] |= out[ET]
        out[WT] |= out[ET]
        out[ET] = False
    return out


def remove_small_components(regions: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove WT connected components (26-connected) under `min_voxels`, from all three regions.

    The largest component always stays, so a small but real tumour is never erased.
    """
    from scipy import ndimage  # imported here: ~0.4 s of every CLI start, and this step is off by default

    out = _check(regions).copy()
    if min_voxels <= 0 or not out[WT].any():
        return out
    components, count = ndimage.label(out[WT], structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return out
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes >= min_voxels
    keep[int(np.argmax(sizes))] = True
    keep[0] = False
    drop = ~keep[components]
    out[:, drop] = False
    return out


def postprocess(probabilities: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    """(3, ...) probabilities -> (3, ...) bool nested regions after every step the settings enable."""
    return apply_region_steps(np.asarray(probabilities) > settings.threshold, settings)


def apply_region_steps(regions: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    """The steps after thresholding: nesting, small-ET relabelling, small-component removal."""
    regions = make_nested(regions)
    if settings.wt_min_component_voxels:
        regions = remove_small_components(regions, settings.wt_min_component_voxels)
    if settings.et_min_voxels:
        regions = relabel_small_et(regions, settings.et_min_voxels)
    return regions


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen voxel threshold and the mean validation Dice for each candidate."""

    min_voxels: int
    mean_dice: dict[int, float] = field(default_factory=dict)


def tune_et_threshold(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    candidates: Sequence[int] = ET_CANDIDATES,
    *,
    voxel_volumes_mm3: Sequence[float] | None = None,
) -> ThresholdChoice:
    """Pick the ET threshold (1 mm^3 voxels) that maximises mean ET Dice over validation cases.

    predictions: nested bool regions (3, ...) per case, before small-ET relabelling.
    targets: expert regions (3, ...) per case, same shapes. Ties go to the smallest threshold,
    the least intervention.
    """
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"need as many predictions as targets (> 0), got {len(predictions)} and {len(targets)}")
    volumes = list(voxel_volumes_mm3) if voxel_volumes_mm3 is not None else [1.0] * len(predictions)
    scores: dict[int, float] = {}
    for candidate in sorted({int(c) for c in candidates}):
        dices = []
        for prediction, target, volume in zip(predictions, targets, volumes):
            if prediction.shape != target.shape:
                raise ValueError(f"prediction shape {prediction.shape} differs from target {target.shape}")
            threshold = round(candidate / volume) if candidate else 0
            relabelled = relabel_small_et(prediction, threshold)
            dices.append(dice(relabelled[ET], np.asarray(target[ET], dtype=bool)))
        scores[candidate] = float(np.mean(dices))
    best = max(scores.values())
    chosen = min(c for c, s in scores.items() if s >= best - 1e-12)
    return ThresholdChoice(min_voxels=chosen, mean_dice=scores)


#: Candidate minimum WT component sizes (1 mm^3 voxels) tried by `tune_min_component`.
COMPONENT_CANDIDATES: tuple[int, ...] = (0, 10, 50, 100, 250, 500, 1000, 2000)


def tune_min_component(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    candidates: Sequence[int] = COMPONENT_CANDIDATES,
    *,
    voxel_volumes_mm3: Sequence[float] | None = None,
) -> ThresholdChoice:
    """Pick `wt_min_component_voxels` (1 mm^3) by mean Dice over the three regions on validation cases.

    Same inputs and tie rule as `tune_et_threshold`; 0 (off) wins unless removal measurably helps.
    """
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"need as many predictions as targets (> 0), got {len(predictions)} and {len(targets)}")
    volumes = list(voxel_volumes_mm3) if voxel_volumes_mm3 is not None else [1.0] * len(predictions)
    scores: dict[int, float] = {}
    for candidate in sorted({int(c) for c in candidates}):
        dices = []
        for prediction, target, volume in zip(predictions, targets, volumes):
            cleaned = remove_small_components(prediction, round(candidate / volume) if candidate else 0)
            dices += [dice(cleaned[i], np.asarray(target[i], dtype=bool)) for i in (WT, TC, ET)]
        scores[candidate] = float(np.mean(dices))
    best = max(scores.values())
    chosen = min(c for c, s in scores.items() if s >= best - 1e-12)
    return ThresholdChoice(min_voxels=chosen, mean_dice=scores)
