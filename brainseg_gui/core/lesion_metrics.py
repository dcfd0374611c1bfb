"""Lesion-wise Dice and HD95 per tumour region, as the BraTS 2023+ challenges rank segmentations.

A port of the official BraTS 2023 evaluation, github.com/rachitsaluja/BraTS-2023-Metrics, file
`brats_2023_metrics/surface_distance/brats_metrics.py` (commit 0c603fc; the older top-level `eval.py`
has the same algorithm). Line numbers below are of that file. Per region (WT, TC, ET):

1. Lesions are 26-connected components (`cc3d.connected_components(..., connectivity=26)`, l. 180-181).
2. The truth is dilated by `dil_factor` iterations of the 18-neighbour structure
   `generate_binary_structure(3, 2)` (l. 178, 183) and the dilated truth split into 26-connected
   components (l. 184); truth lesions whose dilations touch are merged into one lesion: lesion k is the
   truth inside dilated component k (`get_gt_seg_combined_by_dilation`, l. 103-123).
3. Each truth lesion is dilated again the same way (l. 202); every predicted component with a voxel in
   that dilated lesion is matched to it (l. 206-212), and the lesion scores Dice and HD95 against the
   union of its matched components (l. 214-222). A lesion nothing matches scores Dice 0 and HD95
   inf, later replaced by 374 (l. 319): it is a false negative (l. 227-230).
4. Predicted components matched to no truth lesion are false positives (l. 232), each counting
   Dice 0 and HD95 374 in the means (l. 323-335). Predicted components are never size-filtered.
5. Truth lesions of volume <= the challenge's threshold (mm^3: voxels x voxel volume, l. 204) are
   left out of the means and the TP/FN counts (l. 311-321, 344-346); predicted components matched only
   to them are not false positives either (they were matched, l. 212).
6. Lesion-wise Dice = sum of the kept lesions' Dice / (kept lesions + FP); HD95 likewise, with 374 per
   FP (l. 323-335). 0/0 (no kept lesion and no FP, e.g. both masks empty) gives NaN, which the
   reference turns into Dice 1 and HD95 0 (l. 337-341). So: empty truth with a prediction -> Dice 0,
   HD95 374; truth with an empty prediction -> Dice 0, HD95 374.
7. Parameters per challenge (`get_challenge_parameters`, l. 13-49): GLI, SSA and PED dilate 3 times
   with a 50 mm^3 threshold; MEN dilates once (50 mm^3); MET once with 2 mm^3.

One deliberate difference: each lesion's Dice and HD95 are `core.metrics.region_metrics`' (the one
Dice and HD95 of this project, DESIGN.md "Metrics conventions"). The reference's HD95 is DeepMind's
`surface_distance.compute_robust_hausdorff`, which weights surface elements by their marching-cubes
area on a grid shifted by half a voxel; ours takes unweighted face-surface voxels (MONAI's
definition). Both agree exactly on axis-aligned shifts of boxes (tests/core/test_lesion_metrics.py)
and can differ by a fraction of a voxel on curved or diagonal surfaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from brainseg_gui.core.errors import GridMismatchError, LabelError
from brainseg_gui.core.labels import REGIONS, to_regions
from brainseg_gui.core.metrics import (
    _as_mask,
    _check_same_shape,
    _check_spacing,
    bounding_box,
    region_metrics,
    render_table,
)

if TYPE_CHECKING:
    from brainseg_gui.core.study import Study

#: HD95 (mm) of a missed lesion or a false-positive component: the reference's constant (its
#: `replace(np.inf, 374)`), not `metrics.EMPTY_HD95`.
LESION_MISS_HD95 = 374.0


@dataclass(frozen=True)
class LesionParameters:
    """How one BraTS challenge matches lesions: dilation iterations and the volume threshold (mm^3)."""

    challenge: str
    dilation: int
    volume_threshold_mm3: float


#: `get_challenge_parameters` of the reference, by challenge name.
CHALLENGES: dict[str, LesionParameters] = {
    name: LesionParameters(name, dilation, threshold)
    for name, dilation, threshold in (
        ("BraTS-GLI", 3, 50.0),
        ("BraTS-SSA", 3, 50.0),
        ("BraTS-MEN", 1, 50.0),
        ("BraTS-PED", 3, 50.0),
        ("BraTS-MET", 1, 2.0),
    )
}

#: Adult glioma, the challenge the BraTS 2017-2021 cases of this project belong to.
DEFAULT_CHALLENGE = "BraTS-GLI"


@dataclass(frozen=True)
class LesionWiseMetrics:
    """Lesion-wise scores of one region in one case.

    gt_lesions counts the truth lesions above the volume threshold (= tp_lesions + fn_lesions);
    fp_lesions the predicted components that touch no truth lesion. hd95 in mm.
    """

    dice: float
    hd95: float
    gt_lesions: int
    tp_lesions: int
    fp_lesions: int
    fn_lesions: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def lesion_wise(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    *,
    challenge: str = DEFAULT_CHALLENGE,
) -> dict[str, LesionWiseMetrics]:
    """Lesion-wise metrics of each region: `pred` and `truth` are (3, i, j, k) bool stacks in REGIONS
    order (WT, TC, ET), as `labels.to_regions` makes them; `spacing` in mm along i, j, k."""
    for name, stack in (("prediction", pred), ("truth", truth)):
        if stack.ndim != 4 or stack.shape[0] != len(REGIONS):
            raise GridMismatchError(
                f"{name} must stack the {len(REGIONS)} regions {REGIONS} of a 3D grid on axis 0, "
                f"got shape {stack.shape}"
            )
    _check_same_shape(pred, truth, "prediction", "truth")
    parameters = challenge_parameters(challenge)
    return {
        region: region_lesion_wise(pred[index], truth[index], spacing, parameters=parameters)
        for index, region in enumerate(REGIONS)
    }


def lesion_wise_against_study(pred: np.ndarray, study: Study) -> dict[str, LesionWiseMetrics]:
    """Lesion-wise metrics of predicted regions (3, i, j, k) against the study's own labels."""
    if study.labels is None or study.label_convention is None:
        raise LabelError(f"{study.case_id} has no label map to score against")
    return lesion_wise(pred, to_regions(study.labels, study.label_convention), study.grid.spacing)


def challenge_parameters(challenge: str) -> LesionParameters:
    """The reference's parameters of `challenge` (e.g. "BraTS-GLI"); unknown names raise ValueError."""
    try:
        return CHALLENGES[challenge]
    except KeyError:
        raise ValueError(f"unknown BraTS challenge {challenge!r}; known: {sorted(CHALLENGES)}") from None


def region_lesion_wise(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    *,
    parameters: LesionParameters = CHALLENGES[DEFAULT_CHALLENGE],
) -> LesionWiseMetrics:
    """Lesion-wise metrics of one region: `pred` and `truth` are binary 3D masks of one shape."""
    p = _as_mask(pred, "prediction")
    t = _as_mask(truth, "truth")
    _check_same_shape(p, t, "prediction", "truth")
    if p.ndim != 3:
        raise GridMismatchError(f"lesion-wise metrics need 3D masks, got shape {p.shape}")
    sampling = _check_spacing(spacing, p.ndim)
    # Nothing outside the masks' box grown by the dilation can change a component or a dilation.
    box = bounding_box(p | t, margin=parameters.dilation)
    if box is None:
        return LesionWiseMetrics(1.0, 0.0, 0, 0, 0, 0)
    p, t = p[box], t[box]

    cube = np.ones((3, 3, 3), bool)  # 26-connectivity
    cross = ndimage.generate_binary_structure(3, 2)  # the reference's dilation structure
    pred_cc, n_pred = ndimage.label(p, structure=cube)
    pred_boxes = ndimage.find_objects(pred_cc)
    grown = ndimage.binary_dilation(t, structure=cross, iterations=parameters.dilation)
    grown_cc, _ = ndimage.label(grown, structure=cube)
    voxel_mm3 = float(np.prod(sampling))

    matched = np.zeros(n_pred + 1, bool)
    scores: list[tuple[float, float]] = []
    tp = 0
    for number, lesion_box in enumerate(ndimage.find_objects(grown_cc), start=1):
        if lesion_box is None:
            continue
        # The lesion's own dilation stays inside its dilated component, hence inside lesion_box.
        lesion = t[lesion_box] & (grown_cc[lesion_box] == number)
        reach = ndimage.binary_dilation(lesion, structure=cross, iterations=parameters.dilation)
        hits = np.unique(pred_cc[lesion_box][reach])
        hits = hits[hits != 0]
        matched[hits] = True
        if np.count_nonzero(lesion) * voxel_mm3 <= parameters.volume_threshold_mm3:
            continue
        if hits.size == 0:
            scores.append((0.0, LESION_MISS_HD95))
            continue
        tp += 1
        boxes = [lesion_box, *(pred_boxes[h - 1] for h in hits)]
        scores.append(_score_lesion(t, grown_cc, number, pred_cc, hits, boxes, sampling))

    fp = int(n_pred - np.count_nonzero(matched[1:]))
    count = len(scores) + fp
    if count == 0:
        return LesionWiseMetrics(1.0, 0.0, 0, 0, 0, 0)
    return LesionWiseMetrics(
        dice=sum(dice for dice, _ in scores) / count,
        hd95=(sum(hd for _, hd in scores) + fp * LESION_MISS_HD95) / count,
        gt_lesions=len(scores),
        tp_lesions=tp,
        fp_lesions=fp,
        fn_lesions=len(scores) - tp,
    )


def _score_lesion(
    truth: np.ndarray,
    grown_cc: np.ndarray,
    number: int,
    pred_cc: np.ndarray,
    hits: np.ndarray,
    boxes: Sequence[tuple[slice, ...] | None],
    sampling: tuple[float, ...],
) -> tuple[float, float]:
    """Dice and HD95 of one truth lesion against the union of its matched predicted components,
    computed on the box holding all of them (the crop changes neither metric)."""
    box = tuple(
        slice(min(b[axis].start for b in boxes if b), max(b[axis].stop for b in boxes if b))
        for axis in range(truth.ndim)
    )
    lesion = truth[box] & (grown_cc[box] == number)
    union = np.isin(pred_cc[box], hits)
    metrics = region_metrics(union, lesion, sampling)
    return metrics.dice, metrics.hd95


def format_lesion_table(results: Mapping[str, LesionWiseMetrics]) -> str:
    """Plain-text table, one row per region, of lesion-wise Dice, HD95 and lesion counts."""
    header = ["Region", "LW Dice", "LW HD95 mm", "GT lesions", "TP", "FP", "FN"]
    rows = [header]
    for region, m in results.items():
        rows.append([region, f"{m.dice:.4f}", f"{m.hd95:.2f}", str(m.gt_lesions), str(m.tp_lesions),
                     str(m.fp_lesions), str(m.fn_lesions)])
    return render_table(rows)


def describe_parameters(parameters: LesionParameters) -> str:
    """One line naming the matching rules, printed above the lesion-wise table."""
    return (f"lesion-wise ({parameters.challenge}, BraTS 2023 rules): 26-connected lesions, truth dilated "
            f"{parameters.dilation}x to match predictions, truth lesions <= "
            f"{parameters.volume_threshold_mm3:g} mm^3 ignored, {LESION_MISS_HD95:g} mm per miss or false positive")
