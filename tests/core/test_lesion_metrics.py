"""Lesion-wise Dice and HD95 (BraTS 2023 rules) on tiny hand-made volumes, and a real case against itself.

Expected numbers were worked out by hand from the reference's algorithm (BraTS-2023-Metrics,
brats_metrics.py) and checked against a transcription of that code run with its own libraries (cc3d,
DeepMind surface-distance); that code is not a dependency here, so its numbers are pinned.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainseg_gui.core.errors import GridMismatchError
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.core.lesion_metrics import (
    CHALLENGES,
    LESION_MISS_HD95,
    LesionWiseMetrics,
    format_lesion_table,
    lesion_wise,
    region_lesion_wise,
)

SHAPE = (24, 24, 20)
LESION_A = np.s_[2:8, 2:8, 2:8]  # 216 voxels
LESION_B = np.s_[14:20, 14:20, 10:16]  # 216 voxels
ISO = (1.0, 1.0, 1.0)


def mask(*boxes: tuple[slice, ...], shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    out = np.zeros(shape, bool)
    for box in boxes:
        out[box] = True
    return out


def test_two_lesions_one_found_averages_with_the_missed_one() -> None:
    truth = mask(LESION_A, LESION_B)
    pred = mask(np.s_[3:8, 2:8, 2:8])  # 180 voxels inside A: Dice 360/396, HD95 1 mm
    m = region_lesion_wise(pred, truth, ISO)
    d1 = 2 * 180 / (180 + 216)
    assert m.dice == pytest.approx((d1 + 0) / 2)
    assert m.hd95 == pytest.approx((1.0 + 374) / 2)
    assert (m.gt_lesions, m.tp_lesions, m.fp_lesions, m.fn_lesions) == (2, 1, 0, 1)


def test_a_false_positive_blob_counts_dice_0_and_hd95_374() -> None:
    truth = mask(LESION_A, LESION_B)
    pred = mask(np.s_[3:8, 2:8, 2:8], np.s_[2:5, 18:22, 15:18])  # + a blob far from both lesions
    m = region_lesion_wise(pred, truth, ISO)
    d1 = 2 * 180 / (180 + 216)
    assert m.dice == pytest.approx(d1 / 3)  # reference: 0.303030
    assert m.hd95 == pytest.approx((1.0 + 374 + 374) / 3)  # reference: 249.6667
    assert (m.gt_lesions, m.tp_lesions, m.fp_lesions, m.fn_lesions) == (2, 1, 1, 1)


@pytest.mark.parametrize(("spacing", "hd_a", "hd_b"), [(ISO, 2.0, 1.0), ((1.0, 1.0, 2.5), 2.0, 2.5)])
def test_shifted_lesions_use_the_spacing(spacing: tuple[float, ...], hd_a: float, hd_b: float) -> None:
    """A shifted 2 voxels along i, B 1 voxel along k: the reference's DeepMind HD95 gives the same."""
    truth = mask(LESION_A, LESION_B)
    pred = mask(np.s_[4:10, 2:8, 2:8], np.s_[14:20, 14:20, 11:17])
    m = region_lesion_wise(pred, truth, spacing)
    assert m.dice == pytest.approx((2 * 144 / 432 + 2 * 180 / 432) / 2)  # reference: 0.75
    assert m.hd95 == pytest.approx((hd_a + hd_b) / 2)  # reference: 1.5 (iso), 2.25 (k at 2.5 mm)
    assert (m.tp_lesions, m.fp_lesions, m.fn_lesions) == (2, 0, 0)


def test_truth_lesions_at_or_below_the_threshold_are_ignored() -> None:
    truth = mask(LESION_A, LESION_B)
    pred = mask(np.s_[4:10, 2:8, 2:8], np.s_[14:20, 14:20, 11:17])
    expected = region_lesion_wise(pred, truth, ISO)
    small = np.s_[2:7, 18:23, 16:18]  # 50 voxels = 50 mm^3: not above the threshold
    missed = region_lesion_wise(pred, truth | mask(small), ISO)
    found = region_lesion_wise(pred | mask(np.s_[2:4, 18:20, 16:17]), truth | mask(small), ISO)
    assert missed == expected  # neither a lesion nor a false negative
    assert found == expected  # the prediction on it is matched, so not a false positive either
    # 25 voxels of 2 mm^3 (spacing k = 2) are 50 mm^3: ignored; 30 voxels (60 mm^3) count
    spaced = (1.0, 1.0, 2.0)
    assert region_lesion_wise(np.zeros(SHAPE, bool), mask(np.s_[2:7, 2:7, 2:3]), spaced).gt_lesions == 0
    assert region_lesion_wise(np.zeros(SHAPE, bool), mask(np.s_[2:7, 2:8, 2:3]), spaced).gt_lesions == 1


def test_small_predicted_components_are_not_filtered() -> None:
    """The reference thresholds truth lesions only: a lone predicted voxel is a false positive."""
    m = region_lesion_wise(mask(LESION_A, np.s_[20:21, 2:3, 18:19]), mask(LESION_A), ISO)
    assert (m.tp_lesions, m.fp_lesions) == (1, 1)
    assert m.dice == pytest.approx(0.5) and m.hd95 == pytest.approx(374 / 2)


@pytest.mark.parametrize(
    ("pred_boxes", "truth_boxes", "expected"),
    [
        ((), (), LesionWiseMetrics(1.0, 0.0, 0, 0, 0, 0)),
        ((LESION_A,), (), LesionWiseMetrics(0.0, 374.0, 0, 0, 1, 0)),
        ((), (LESION_A, LESION_B), LesionWiseMetrics(0.0, 374.0, 2, 0, 0, 2)),
        ((), (np.s_[2:4, 2:4, 2:4],), LesionWiseMetrics(1.0, 0.0, 0, 0, 0, 0)),  # only a tiny lesion: 0/0
        ((LESION_B,), (np.s_[2:4, 2:4, 2:4],), LesionWiseMetrics(0.0, 374.0, 0, 0, 1, 0)),
        ((LESION_A,), (LESION_A,), LesionWiseMetrics(1.0, 0.0, 1, 1, 0, 0)),
    ],
    ids=["both empty", "empty truth", "empty prediction", "tiny truth only", "tiny truth and a FP", "identical"],
)
def test_empty_cases(pred_boxes: tuple, truth_boxes: tuple, expected: LesionWiseMetrics) -> None:
    assert region_lesion_wise(mask(*pred_boxes), mask(*truth_boxes), ISO) == expected


def test_voxels_touching_at_a_corner_are_one_lesion() -> None:
    corner = mask(np.s_[2:6, 2:6, 2:6], np.s_[6:10, 6:10, 6:10])  # share only a vertex
    assert region_lesion_wise(corner, np.zeros(SHAPE, bool), ISO).fp_lesions == 1
    # ...and a truth lesion covered by only one of the blocks still is one lesion
    m = region_lesion_wise(mask(np.s_[2:6, 2:6, 2:6]), corner, ISO)
    assert (m.gt_lesions, m.tp_lesions) == (1, 1) and m.dice == pytest.approx(2 * 64 / (64 + 128))


@pytest.mark.parametrize(("gap", "lesions"), [(6, 1), (7, 2)])
def test_truth_lesions_whose_dilations_touch_are_merged(gap: int, lesions: int) -> None:
    """Dilated 3 times each, two lesions meet across a gap of up to 6 voxels."""
    truth = mask(np.s_[2:7, 2:7, 2:7], np.s_[2:7, 7 + gap:12 + gap, 2:7])
    assert region_lesion_wise(np.zeros(SHAPE, bool), truth, ISO).gt_lesions == lesions


@pytest.mark.parametrize(("offset", "matched"), [(1, True), (2, True), (3, True), (4, False)])
def test_a_prediction_near_a_lesion_matches_it(offset: int, matched: bool) -> None:
    """The prediction starts `offset` voxels past lesion A's face (gap offset - 1): within the 3 dilations
    it is the lesion's (Dice 0 if it does not overlap), beyond them a false positive."""
    pred = mask(np.s_[7 + offset:10 + offset, 2:8, 2:8])
    m = region_lesion_wise(pred, mask(LESION_A), ISO)
    assert (m.tp_lesions, m.fp_lesions, m.fn_lesions) == ((1, 0, 0) if matched else (0, 1, 1))
    assert m.dice == 0.0
    if matched:
        assert m.hd95 < 10
    else:
        assert m.hd95 == LESION_MISS_HD95


def test_the_met_challenge_dilates_once() -> None:
    pred = mask(np.s_[10:13, 2:8, 2:8])  # 3 voxels past A's face: matched with 3 dilations only
    assert region_lesion_wise(pred, mask(LESION_A), ISO).tp_lesions == 1
    assert region_lesion_wise(pred, mask(LESION_A), ISO, parameters=CHALLENGES["BraTS-MET"]).tp_lesions == 0


def test_random_blobs_match_the_reference_numbers() -> None:
    """Smoothed noise (many lesions, many false positives): Dice and counts exactly as the reference
    code computes them; its area-weighted HD95 differs from ours by a fraction of a voxel."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        truth = ndimage.gaussian_filter(rng.random((32, 32, 28)), 2.0) > 0.53
        pred = ndimage.gaussian_filter(rng.random((32, 32, 28)), 2.0) > 0.53
    pred |= np.roll(truth, 1, axis=2)
    m = region_lesion_wise(pred, truth, ISO)
    assert (m.tp_lesions, m.fp_lesions, m.fn_lesions) == (4, 4, 0)
    assert m.dice == pytest.approx(0.263693, abs=1e-6)
    assert m.hd95 == pytest.approx(190.0224, abs=0.5)


def test_lesion_wise_scores_each_region_of_a_stack() -> None:
    labels = np.zeros(SHAPE, np.uint8)
    labels[LESION_A] = 2  # edema: WT only
    labels[4:7, 4:7, 4:7] = 4  # ET (27 voxels, under the threshold): TC and ET tiny
    regions = to_regions(labels, LabelConvention.BRATS)
    result = lesion_wise(regions, regions, ISO)
    assert list(result) == ["WT", "TC", "ET"]
    assert result["WT"] == LesionWiseMetrics(1.0, 0.0, 1, 1, 0, 0)
    assert result["ET"] == LesionWiseMetrics(1.0, 0.0, 0, 0, 0, 0)
    assert "WT" in format_lesion_table(result)
    with pytest.raises(GridMismatchError, match="stack the 3 regions"):
        lesion_wise(regions[:2], regions[:2], ISO)
    with pytest.raises(ValueError, match="unknown BraTS challenge"):
        lesion_wise(regions, regions, ISO, challenge="BraTS-XYZ")


def test_a_real_truth_against_itself_is_perfect(real_case: Path) -> None:
    seg = nib.load(str(real_case / f"{real_case.name}_seg.nii.gz"))
    regions = to_regions(np.asarray(seg.dataobj), LabelConvention.BRATS)
    for region, m in lesion_wise(regions, regions, seg.header.get_zooms()[:3]).items():
        assert m.dice == 1.0 and m.hd95 == 0.0, region
        assert m.gt_lesions >= 1 and m.tp_lesions == m.gt_lesions and m.fp_lesions == m.fn_lesions == 0
