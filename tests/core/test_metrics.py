"""Metrics: hand-computed tiny cases, empty conventions, crop exactness, MONAI agreement, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from brainseg_gui.core.errors import GridMismatchError, LabelError
from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
from brainseg_gui.core.metrics import (
    EMPTY_HD95,
    RegionMetrics,
    bounding_box,
    evaluate_against_study,
    evaluate_regions,
    format_table,
    hd95,
    mean_over_cases,
    region_metrics,
    surface,
)

# ---------------------------------------------------------------- hand-computed tiny cases


def test_two_voxel_case_by_hand() -> None:
    truth = np.zeros((2, 2, 2), bool)
    truth[0, 0, 0] = truth[1, 0, 0] = True
    pred = np.zeros((2, 2, 2), bool)
    pred[0, 0, 0] = True
    m = region_metrics(pred, truth, (2.0, 1.0, 1.0))
    assert m.dice == pytest.approx(2 / 3)
    assert m.iou == pytest.approx(1 / 2)
    assert m.accuracy == pytest.approx(7 / 8)
    assert m.recall == pytest.approx(1 / 2)
    assert m.precision == 1.0
    assert m.specificity == 1.0
    assert m.accuracy_in_brain is None
    # Every voxel of a 2x2x2 array is on its edge, so surfaces are the masks themselves.
    # pred -> truth: [0]; truth -> pred: [0, 2 mm]; 95th percentile (linear) of [0, 2] = 1.9.
    assert m.hd95 == pytest.approx(1.9)
    assert m.volume_pred_ml == pytest.approx(0.002)
    assert m.volume_truth_ml == pytest.approx(0.004)


def _cube(shape: tuple[int, int, int], start: tuple[int, int, int], size: int = 3) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_surface_of_a_cube_is_all_but_its_centre() -> None:
    cube = _cube((5, 5, 5), (1, 1, 1))
    edge = surface(cube)
    assert edge.sum() == 26
    assert not edge[2, 2, 2]
    # The array edge counts as background: a full array is all surface on its faces only.
    assert surface(np.ones((3, 3, 3), bool)).sum() == 26


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [((1.0, 1.0, 1.0), 1.0), ((2.5, 1.0, 1.0), 2.5), ((1.0, 3.0, 0.5), 1.0), ((3.0, 0.7, 0.7), 3.0)],
)
def test_cube_vs_cube_shifted_along_first_axis(spacing: tuple[float, float, float], expected: float) -> None:
    # Two 3x3x3 cubes one voxel apart along axis 0 (the prediction touches the array edge).
    # Each surface has 26 voxels; by hand, 16 lie on the other surface (distance 0), 9 (the far
    # face) are one step along axis 0 away, and the centre face voxel is one step along the
    # cheapest axis away. Sorted: 16 zeros, 1 x min(spacing), 9 x spacing[0]; the 95th
    # percentile sits at position 23.75 of 0..25, inside the last nine.
    truth = _cube((5, 5, 5), (1, 1, 1))
    pred = _cube((5, 5, 5), (2, 1, 1))
    m = region_metrics(pred, truth, spacing)
    assert m.hd95 == pytest.approx(expected)
    assert hd95(truth, pred, spacing) == pytest.approx(expected)
    assert m.dice == pytest.approx(2 / 3)  # overlap 18 of 27 + 27
    assert m.iou == pytest.approx(0.5)  # 18 / 36
    assert m.recall == pytest.approx(18 / 27)
    assert m.precision == pytest.approx(18 / 27)
    assert m.specificity == pytest.approx((125 - 36) / (125 - 27))
    assert m.accuracy == pytest.approx((125 - 18) / 125)
    assert m.volume_pred_ml == pytest.approx(27 * np.prod(spacing) / 1000)


def test_hd95_is_the_larger_directed_percentile() -> None:
    # Two far voxels in the prediction: 2 of its 28 surface voxels are 8 mm from the truth, so
    # pred -> truth p95 interpolates between 0 and 8 (position 25.65 of 0..27 -> 0.65 * 8 = 5.2);
    # truth -> pred is 0 everywhere. The larger one wins.
    truth = _cube((12, 5, 5), (1, 1, 1))
    pred = truth.copy()
    pred[11, 2, 2:4] = True
    assert hd95(pred, truth, (1, 1, 1)) == pytest.approx(0.65 * 8)
    assert hd95(truth, pred, (1, 1, 1)) == pytest.approx(0.65 * 8)


def test_accuracy_in_brain_counts_only_brain_voxels() -> None:
    truth = _cube((5, 5, 5), (1, 1, 1))
    pred = _cube((5, 5, 5), (2, 1, 1))
    brain = np.zeros((5, 5, 5), bool)
    brain[:, :, 1:4] = True  # 75 voxels, holding both cubes: 18 voxels disagree
    m = region_metrics(pred, truth, (1, 1, 1), brain=brain)
    assert m.accuracy_in_brain == pytest.approx(1 - 18 / 75)
    assert m.accuracy == pytest.approx(1 - 18 / 125)
    empty_brain = region_metrics(pred, truth, (1, 1, 1), brain=np.zeros((5, 5, 5), bool))
    assert math.isnan(empty_brain.accuracy_in_brain)  # type: ignore[arg-type]


# ---------------------------------------------------------------- empty conventions


def test_both_empty() -> None:
    empty = np.zeros((4, 4, 4), bool)
    m = region_metrics(empty, empty, (1, 1, 1))
    assert (m.dice, m.iou, m.hd95, m.recall, m.precision, m.specificity, m.accuracy) == (1, 1, 0, 1, 1, 1, 1)
    assert m.volume_pred_ml == m.volume_truth_ml == 0


def test_prediction_empty() -> None:
    truth = _cube((5, 5, 5), (1, 1, 1))
    m = region_metrics(np.zeros_like(truth), truth, (1, 1, 1))
    assert (m.dice, m.iou, m.hd95, m.recall, m.precision) == (0, 0, EMPTY_HD95, 0, 0)
    assert m.specificity == 1.0
    assert m.accuracy == pytest.approx(1 - 27 / 125)


def test_truth_empty() -> None:
    pred = _cube((5, 5, 5), (1, 1, 1))
    m = region_metrics(pred, np.zeros_like(pred), (1, 1, 1))
    assert (m.dice, m.iou, m.hd95, m.recall, m.precision) == (0, 0, EMPTY_HD95, 0, 0)
    assert m.specificity == pytest.approx(1 - 27 / 125)
    assert EMPTY_HD95 == 373.13


def test_truth_fills_everything_gives_specificity_one() -> None:
    full = np.ones((3, 3, 3), bool)
    m = region_metrics(full, full, (1, 1, 1))
    assert (m.specificity, m.dice, m.hd95) == (1.0, 1.0, 0.0)


# ---------------------------------------------------------------- inputs


def test_numeric_zero_one_masks_are_accepted_and_others_rejected() -> None:
    truth = _cube((5, 5, 5), (1, 1, 1))
    as_bool = region_metrics(truth, truth, (1, 1, 1))
    assert region_metrics(truth.astype(np.uint8), truth.astype(np.float32), (1, 1, 1)) == as_bool
    with pytest.raises(LabelError, match="0.5"):
        region_metrics(truth * 0.5, truth, (1, 1, 1))
    with pytest.raises(LabelError, match=r"\[2\]"):
        hd95(truth, truth * 2, (1, 1, 1))


def test_shape_and_spacing_errors_name_the_values() -> None:
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(GridMismatchError, match=r"\(4, 4, 4\).*\(4, 4, 5\)"):
        region_metrics(a, np.zeros((4, 4, 5), bool), (1, 1, 1))
    with pytest.raises(GridMismatchError, match="spacing"):
        region_metrics(a, a, (1, 1))
    with pytest.raises(GridMismatchError, match="spacing"):
        hd95(a, a, (1, 0, 1))
    with pytest.raises(GridMismatchError, match="brain"):
        region_metrics(a, a, (1, 1, 1), brain=np.zeros((4, 4), bool))
    with pytest.raises(GridMismatchError, match=r"\(2, 4, 4, 4\)"):
        evaluate_regions(np.zeros((2, 4, 4, 4), bool), np.zeros((2, 4, 4, 4), bool), (1, 1, 1))


def test_bounding_box() -> None:
    mask = np.zeros((6, 7, 8), bool)
    assert bounding_box(mask) is None
    mask[1, 2:4, 7] = True
    assert bounding_box(mask) == (slice(1, 2), slice(2, 4), slice(7, 8))
    assert bounding_box(mask, margin=1) == (slice(0, 3), slice(1, 5), slice(6, 8))


# ---------------------------------------------------------------- crop exactness


def _hd95_whole_volume(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
    """The definition with no cropping: surfaces and distance transforms over the whole array."""
    sp = pred & ~ndimage.binary_erosion(pred)
    stt = truth & ~ndimage.binary_erosion(truth)
    a = ndimage.distance_transform_edt(~stt, sampling=spacing)[sp]
    b = ndimage.distance_transform_edt(~sp, sampling=spacing)[stt]
    return float(max(np.percentile(a, 95), np.percentile(b, 95)))


masks = arrays(bool, st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 6)))
spacings = st.tuples(*(st.floats(0.3, 4.0) for _ in range(3)))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), spacing=spacings, pad=st.tuples(*(st.integers(0, 5) for _ in range(6))))
def test_cropped_hd95_equals_whole_volume(data: st.DataObject, spacing: tuple[float, ...],
                                          pad: tuple[int, ...]) -> None:
    # Random masks (often touching the array edge) inside a larger zero array: the cropped
    # computation must give the whole-volume value exactly.
    pred = data.draw(masks)
    truth = data.draw(arrays(bool, pred.shape))
    if not pred.any() or not truth.any():
        return
    widths = [(pad[0], pad[1]), (pad[2], pad[3]), (pad[4], pad[5])]
    pred, truth = np.pad(pred, widths), np.pad(truth, widths)
    assert hd95(pred, truth, spacing) == _hd95_whole_volume(pred, truth, spacing)


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_dice_iou_properties(data: st.DataObject) -> None:
    pred = data.draw(masks)
    truth = data.draw(arrays(bool, pred.shape))
    forward = region_metrics(pred, truth, (1.0, 1.0, 1.0))
    backward = region_metrics(truth, pred, (1.0, 1.0, 1.0))
    assert forward.dice == backward.dice
    assert forward.iou == backward.iou
    assert forward.hd95 == backward.hd95
    assert forward.recall == backward.precision
    assert 0.0 <= forward.dice <= 1.0 and 0.0 <= forward.iou <= 1.0
    assert forward.dice == pytest.approx(2 * forward.iou / (1 + forward.iou))
    assert forward.hd95 >= 0.0
    for value in (forward.accuracy, forward.recall, forward.precision, forward.specificity):
        assert 0.0 <= value <= 1.0
    same = region_metrics(pred, pred, (1.0, 1.0, 1.0))
    assert (same.dice, same.hd95, same.accuracy) == (1.0, 0.0, 1.0)


# ---------------------------------------------------------------- regions, averaging, table


def test_evaluate_regions_on_label_maps() -> None:
    truth_labels = np.zeros((6, 6, 6), np.uint8)
    truth_labels[1:5, 1:5, 1:5] = 2
    truth_labels[2:4, 2:4, 2:4] = 4
    truth_labels[2, 2, 2] = 1
    pred_labels = truth_labels.copy()
    pred_labels[pred_labels == 1] = 4  # NCR predicted as ET: TC unchanged, ET one voxel too big
    results = evaluate_regions(to_regions(pred_labels, LabelConvention.BRATS),
                               to_regions(truth_labels, LabelConvention.BRATS), (1, 1, 1))
    assert tuple(results) == REGIONS
    assert results["WT"].dice == 1.0 and results["TC"].dice == 1.0
    assert results["ET"].dice == pytest.approx(2 * 7 / (8 + 7))
    assert results["ET"].volume_pred_ml == pytest.approx(0.008)


def test_a_study_is_scored_against_its_own_labels_inside_its_non_zero_brain() -> None:
    import dataclasses

    from brainseg_gui.core.phantom import make_phantom

    study = make_phantom((40, 44, 36), seed=3)
    assert study.labels is not None and study.label_convention is not None
    truth = to_regions(study.labels, study.label_convention)
    prediction = np.roll(truth, 2, axis=1)
    brain = study.stacked().any(axis=0)
    assert 0 < brain.sum() < brain.size  # a real brain mask, not the whole volume
    expected = evaluate_regions(prediction, truth, study.grid.spacing, brain=brain)
    assert evaluate_against_study(prediction, study) == expected
    with pytest.raises(LabelError, match="no label map"):
        evaluate_against_study(prediction, dataclasses.replace(study, labels=None, label_convention=None))


def test_mean_over_cases_and_table() -> None:
    truth = _cube((5, 5, 5), (1, 1, 1))
    perfect = {r: region_metrics(truth, truth, (1, 1, 1)) for r in REGIONS}
    missed = {r: region_metrics(np.zeros_like(truth), truth, (1, 1, 1), brain=np.ones_like(truth))
              for r in REGIONS}
    mean = mean_over_cases([perfect, missed])
    assert tuple(mean) == REGIONS
    assert mean["WT"].dice == 0.5
    assert mean["TC"].hd95 == pytest.approx(EMPTY_HD95 / 2)
    assert mean["ET"].accuracy_in_brain == pytest.approx(1 - 27 / 125)  # only the case that has it
    assert mean_over_cases([perfect])["WT"].accuracy_in_brain is None
    with pytest.raises(ValueError):
        mean_over_cases([])

    table = format_table(mean)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["Region", "Dice", "IoU"]
    assert "HD95" in lines[0]
    assert lines[2].split()[:2] == ["WT", "0.5000"]
    assert f"{EMPTY_HD95 / 2:.2f}" in lines[2].split()  # mean HD95 of 0 and 373.13
    assert format_table(perfect).splitlines()[2].split()[4] == "-"  # no brain mask given
    assert set(RegionMetrics(*[0.0] * 10).as_dict()) >= {"dice", "hd95", "volume_truth_ml"}


# ---------------------------------------------------------------- real cases, against MONAI


def _regions(case_dir):  # type: ignore[no-untyped-def]
    import nibabel as nib

    seg = next(case_dir.glob("*_seg.nii.gz"))
    return to_regions(np.asanyarray(nib.load(seg).dataobj), LabelConvention.BRATS)


@pytest.mark.slow
def test_agrees_with_monai_on_real_cases(shared_data) -> None:  # type: ignore[no-untyped-def]
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")

    truth = _regions(shared_data / "brats2021" / "BraTS2021_00003")
    shifted = np.roll(truth, (3, -2), axis=(1, 3))
    shifted[0] = ndimage.binary_erosion(shifted[0], iterations=2)
    other = _regions(shared_data / "brats2021" / "BraTS2021_00005")
    tiny = _regions(shared_data / "brats2021" / "BraTS2021_00014")  # 2 voxels of NCR
    pairs = {"eroded+shifted": (shifted, truth), "another case": (other, truth),
             "tiny core": (np.roll(tiny, 1, axis=1), tiny)}
    runs = [((1.0, 1.0, 1.0), "another case"), ((1.0, 1.2, 2.5), "eroded+shifted"),
            ((1.0, 1.2, 2.5), "tiny core")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MONAI's many small reductions crawl when threads fight for 2 cores
    try:
        for spacing, name in runs:
            pred, gt = pairs[name]
            # MONAI crops to the masks' bounding box itself; handing it the box (plus background
            # margin, so no surface touches the array edge) only spares it scanning 9M voxels.
            # Ours runs on the full volumes.
            box = (slice(None), *bounding_box(pred.any(axis=0) | gt.any(axis=0), margin=2))
            p = torch.from_numpy(pred[box][None]).float()
            g = torch.from_numpy(gt[box][None]).float()
            their_hd = monai_metrics.compute_hausdorff_distance(
                p, g, include_background=True, percentile=95, spacing=spacing)[0].numpy()
            their_dice = monai_metrics.compute_dice(p, g, include_background=True)[0].numpy()
            _check_against_monai(name, evaluate_regions(pred, gt, spacing), their_hd, their_dice)
    finally:
        torch.set_num_threads(threads)


def _check_against_monai(name: str, ours: dict[str, RegionMetrics], their_hd: np.ndarray,
                         their_dice: np.ndarray) -> None:
    for index, region in enumerate(REGIONS):
        # MONAI works in float32 (distances and quantile): agreement to ~1e-5 mm.
        assert ours[region].hd95 == pytest.approx(float(their_hd[index]), abs=1e-3), (name, region)
        assert ours[region].dice == pytest.approx(float(their_dice[index]), abs=1e-6), (name, region)
    assert ours["WT"].hd95 >= 1.0  # the perturbations are real


def test_real_case_crop_equals_whole_volume_and_volumes(shared_data) -> None:  # type: ignore[no-untyped-def]
    truth = _regions(shared_data / "brats2021" / "BraTS2021_00003")[0]
    pred = np.roll(ndimage.binary_erosion(truth, iterations=2), 4, axis=0)
    # Whole-volume EDT on 240x240x155 is slow; take a 2-voxel-strided view, still 120x120x78.
    t, p = truth[::2, ::2, ::2], pred[::2, ::2, ::2]
    assert hd95(p, t, (2.0, 2.0, 2.0)) == _hd95_whole_volume(p, t, (2.0, 2.0, 2.0))
    m = region_metrics(pred, truth, (1.0, 1.0, 1.0))
    assert m.volume_truth_ml == pytest.approx((17214 + 57773 + 24252) / 1000)  # README counts
