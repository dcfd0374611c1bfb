"""Segmentation metrics per tumour region, with the BraTS conventions (DESIGN.md, "Metrics").

Every function takes binary masks of one region on one voxel grid (any dimensionality, axis order
as the arrays come) and the voxel spacing in mm along the same axes. Conventions for empty masks,
so that an evaluation never yields NaN and tables average cleanly:

| case                  | Dice, IoU | HD95 (mm)  | recall        | precision     |
| --------------------- | --------- | ---------- | ------------- | ------------- |
| both empty            | 1         | 0          | 1 (by rule)   | 1 (by rule)   |
| only prediction empty | 0         | EMPTY_HD95 | 0             | 0 (by rule)   |
| only truth empty      | 0         | EMPTY_HD95 | 0 (by rule)   | 0             |

"By rule" marks a 0/0 that is defined so: finding nothing where there is nothing is perfect, and
a prediction of nothing (or a detection of nothing) is wrong when the other mask is not empty.
Specificity with no negatives at all (the truth fills the array) is 1.

HD95 follows MONAI's `compute_hausdorff_distance(..., percentile=95)` (after DeepMind's
surface-distance): surfaces are the mask minus its erosion by the 6-connected (face) neighbourhood,
with outside-the-array counted as background; the distance of each surface voxel of one mask to the
nearest surface voxel of the other uses the voxel spacing; the result is the larger of the two
directed 95th percentiles (linear interpolation, as numpy and torch.quantile). medpy's `hd95`
instead takes one 95th percentile of both directions pooled, which can differ slightly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from brainseg_gui.core.dice import dice_from_counts
from brainseg_gui.core.errors import GridMismatchError, LabelError
from brainseg_gui.core.labels import REGIONS, to_regions

if TYPE_CHECKING:
    from brainseg_gui.core.study import Study

#: HD95 (mm) when exactly one of prediction and truth is empty: the diagonal of a BraTS volume
#: (sqrt(240^2 + 240^2 + 155^2)), the value the BraTS evaluation reports.
EMPTY_HD95 = 373.13

#: The 95th percentile of surface distances.
HD_PERCENTILE = 95.0

#: Voxels of background kept around the masks' common bounding box before erosion and distance
#: transforms; one is enough for the erosion to see the mask's outer faces.
CROP_MARGIN = 1


@dataclass(frozen=True)
class RegionMetrics:
    """All metrics of one region in one case.

    accuracy counts every voxel of the array (dominated by background, as the paper reports it);
    accuracy_in_brain only the voxels of the brain mask (None when no mask was given, NaN when the
    mask was empty). hd95 in mm; volumes in mL.
    """

    dice: float
    iou: float
    accuracy: float
    accuracy_in_brain: float | None
    recall: float
    precision: float
    specificity: float
    hd95: float
    volume_pred_ml: float
    volume_truth_ml: float

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def region_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    *,
    brain: np.ndarray | None = None,
) -> RegionMetrics:
    """Every metric of one region: `pred` and `truth` are binary masks of one shape.

    Masks may be bool or numeric arrays holding only 0 and 1 (anything else raises LabelError, so a
    probability map is not silently thresholded at zero). `brain`, when given, is a mask of the
    same shape inside which `accuracy_in_brain` is counted.
    """
    p = _as_mask(pred, "prediction")
    t = _as_mask(truth, "truth")
    _check_same_shape(p, t, "prediction", "truth")
    sampling = _check_spacing(spacing, p.ndim)

    n_pred = int(np.count_nonzero(p))
    n_truth = int(np.count_nonzero(t))
    tp = int(np.count_nonzero(p & t))
    fp = n_pred - tp
    fn = n_truth - tp
    tn = p.size - n_pred - n_truth + tp

    iou = 1.0 if n_pred + n_truth == 0 else tp / (n_pred + n_truth - tp)

    in_brain: float | None = None
    if brain is not None:
        b = _as_mask(brain, "brain mask")
        _check_same_shape(p, b, "prediction", "brain mask")
        n_brain = int(np.count_nonzero(b))
        errors_in_brain = int(np.count_nonzero((p ^ t) & b))
        in_brain = 1.0 - errors_in_brain / n_brain if n_brain else math.nan

    voxel_ml = float(np.prod(sampling)) / 1000.0
    return RegionMetrics(
        dice=dice_from_counts(tp, n_pred, n_truth),
        iou=iou,
        accuracy=(tp + tn) / p.size,
        accuracy_in_brain=in_brain,
        recall=tp / (tp + fn) if n_truth else (1.0 if n_pred == 0 else 0.0),
        precision=tp / (tp + fp) if n_pred else (1.0 if n_truth == 0 else 0.0),
        specificity=tn / (tn + fp) if tn + fp else 1.0,
        hd95=_hd95(p, t, sampling),
        volume_pred_ml=n_pred * voxel_ml,
        volume_truth_ml=n_truth * voxel_ml,
    )


def evaluate_regions(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    *,
    brain: np.ndarray | None = None,
) -> dict[str, RegionMetrics]:
    """Metrics of each region: `pred` and `truth` are (3, ...) stacks in REGIONS order (WT, TC, ET),
    as `labels.to_regions` makes them."""
    for name, stack in (("prediction", pred), ("truth", truth)):
        if stack.ndim < 2 or stack.shape[0] != len(REGIONS):
            raise GridMismatchError(
                f"{name} must stack the {len(REGIONS)} regions {REGIONS} on axis 0, got shape {stack.shape}"
            )
    _check_same_shape(pred, truth, "prediction", "truth")
    return {
        region: region_metrics(pred[index], truth[index], spacing, brain=brain)
        for index, region in enumerate(REGIONS)
    }


def evaluate_against_study(pred: np.ndarray, study: Study) -> dict[str, RegionMetrics]:
    """Metrics of predicted regions (3, i, j, k) against the study's own labels on its grid.

    Accuracy inside the brain counts the voxels non-zero in any sequence (BraTS images are
    skull-stripped), the one brain mask cross-validation and the experiment both score with.
    """
    if study.labels is None or study.label_convention is None:
        raise LabelError(f"{study.case_id} has no label map to score against")
    truth = to_regions(study.labels, study.label_convention)
    brain = np.asarray(study.stacked().any(axis=0))
    return evaluate_regions(pred, truth, study.grid.spacing, brain=brain)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) between the surfaces of two binary masks.

    Both empty -> 0; exactly one empty -> EMPTY_HD95. See the module docstring for the definition.
    """
    p = _as_mask(pred, "prediction")
    t = _as_mask(truth, "truth")
    _check_same_shape(p, t, "prediction", "truth")
    return _hd95(p, t, _check_spacing(spacing, p.ndim))


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of a bool mask with at least one face neighbour outside it (or on the array edge)."""
    return mask & ~ndimage.binary_erosion(mask)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Smallest box (slices) holding every True voxel, grown by `margin` and clipped; None if empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def _hd95(pred: np.ndarray, truth: np.ndarray, sampling: tuple[float, ...]) -> float:
    # Distances only need the common bounding box: every surface voxel lies inside it, and the
    # distance transform's result at a voxel depends only on where the zero (surface) voxels are.
    # The margin keeps the erosion seeing background beyond the masks' outer faces; at the array
    # edge, erosion treats the outside as background either way. So the crop changes nothing.
    box = bounding_box(pred | truth, margin=CROP_MARGIN)
    if box is None:
        return 0.0
    p, t = pred[box], truth[box]
    if not p.any() or not t.any():
        return EMPTY_HD95
    surface_p, surface_t = surface(p), surface(t)
    to_truth = ndimage.distance_transform_edt(~surface_t, sampling=sampling)[surface_p]
    to_pred = ndimage.distance_transform_edt(~surface_p, sampling=sampling)[surface_t]
    return float(max(np.percentile(to_truth, HD_PERCENTILE), np.percentile(to_pred, HD_PERCENTILE)))


def mean_over_cases(cases: Sequence[Mapping[str, RegionMetrics]]) -> dict[str, RegionMetrics]:
    """Per region, the mean of each metric over cases (empty-mask conventions included, as BraTS
    averages them). accuracy_in_brain averages the cases that have it (None if none do)."""
    if not cases:
        raise ValueError("mean_over_cases needs at least one case")
    regions = [r for r in REGIONS if all(r in case for case in cases)]
    regions += sorted({r for case in cases for r in case} - set(regions))
    out: dict[str, RegionMetrics] = {}
    for region in regions:
        present = [case[region] for case in cases if region in case]
        values: dict[str, float | None] = {}
        for f in fields(RegionMetrics):
            column = [getattr(m, f.name) for m in present if getattr(m, f.name) is not None]
            values[f.name] = float(np.mean(column)) if column else None
        out[region] = RegionMetrics(**values)  # type: ignore[arg-type]
    return out


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("dice", "Dice", "{:.4f}"),
    ("iou", "IoU", "{:.4f}"),
    ("accuracy", "Acc", "{:.4f}"),
    ("accuracy_in_brain", "Acc(brain)", "{:.4f}"),
    ("recall", "Recall", "{:.4f}"),
    ("precision", "Precision", "{:.4f}"),
    ("specificity", "Specif.", "{:.4f}"),
    ("hd95", "HD95 mm", "{:.2f}"),
    ("volume_pred_ml", "Pred mL", "{:.2f}"),
    ("volume_truth_ml", "Truth mL", "{:.2f}"),
)


def format_table(results: Mapping[str, RegionMetrics]) -> str:
    """Plain-text table, one row per region, for the CLI and logs ('-' where a value is absent)."""
    header = ["Region", *(title for _, title, _ in _COLUMNS)]
    rows = [header]
    for region, metrics in results.items():
        row = [region]
        for name, _, fmt in _COLUMNS:
            value = getattr(metrics, name)
            row.append("-" if value is None else fmt.format(value))
        rows.append(row)
    return render_table(rows)


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells (the first the header) as aligned text: first column left, the rest right."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _as_mask(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        return array
    foreground = array != 0
    odd = array[foreground]
    odd = odd[odd != 1]
    if odd.size:
        raise LabelError(
            f"the {name} must be a binary mask (0/1), found values such as {np.unique(odd[:1000])[:5].tolist()}"
        )
    return foreground


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise GridMismatchError(f"the {name_a} has shape {a.shape} but the {name_b} {b.shape}")


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    sampling = tuple(float(s) for s in spacing)
    if len(sampling) != ndim or not all(math.isfinite(s) and s > 0 for s in sampling):
        raise GridMismatchError(f"spacing must be {ndim} positive sizes in mm, got {tuple(spacing)}")
    return sampling
