"""Correcting a mask by clicks: a click changes the mask in 3D where the images say, regions stay nested,
bad clicks are named (tests/test_cli_refine.py: the command)."""

from __future__ import annotations

import numpy as np
import pytest

from brainseg_gui.core.click_refine import Click, ClickError, RefineContext, apply_click, parse_click
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.core.phantom import make_phantom

BRATS = LabelConvention.BRATS


@pytest.fixture(scope="module")
def phantom():
    study = make_phantom((80, 96, 72), seed=3)
    truth = np.asarray(study.labels)
    regions = to_regions(truth, BRATS)
    # a prior that is right: probability 0.95 inside each true region, 0.02 outside
    prior = np.where(regions, 0.95, 0.02).astype(np.float32)
    return study, truth, RefineContext.build(study.images, study.grid.spacing, prior)


def _centre(mask: np.ndarray) -> tuple[int, int, int]:
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(int(inside.argmax()), mask.shape))  # type: ignore[return-value]


def test_a_positive_click_adds_the_missed_part_in_3d(phantom) -> None:
    _study, truth, context = phantom
    wt = truth > 0
    missed = wt.copy()
    centre = _centre(wt)
    cut = np.zeros_like(wt)
    cut[centre[0]:, :, :] = True  # the mask misses one half of the tumour
    labels = np.where(cut, 0, truth).astype(np.uint8)
    voxel = _centre(wt & cut)
    corrected, box = apply_click(labels, Click(voxel, "WT", True), context)
    added = (corrected > 0) & ~(labels > 0)
    assert added[voxel] and len(np.unique(np.nonzero(added)[2])) > 3  # more than the clicked slice
    assert (added & ~missed).sum() < 0.1 * added.sum()  # what it adds is tumour
    assert all(s.start <= v < s.stop for s, v in zip(box, voxel))
    regions = to_regions(corrected, BRATS)
    assert not (regions[2] & ~regions[1]).any() and not (regions[1] & ~regions[0]).any()


def test_a_negative_click_removes_a_wrong_blob_and_leaves_the_rest(phantom) -> None:
    _study, truth, context = phantom
    labels = truth.copy()
    far = (5, 5, 5)
    blob = np.zeros_like(labels, dtype=bool)
    blob[3:9, 3:9, 3:9] = True
    labels[blob & (truth == 0)] = 2
    corrected, _ = apply_click(labels, Click(far, "WT", False), context)
    assert not (corrected[blob & (truth == 0)] > 0).any()
    np.testing.assert_array_equal(corrected[~blob], labels[~blob])


def test_label_clicks_and_boxes_keep_the_regions_nested(phantom) -> None:
    _study, truth, context = phantom
    et = truth == 4
    labels = np.where(et, 1, truth).astype(np.uint8)  # enhancing tumour mislabelled as necrosis
    corrected, _ = apply_click(labels, Click(_centre(et), "ET", True), context)
    assert (corrected[et] == 4).mean() > 0.5
    box_click = Click((10, 10, 10), "WT", True, corner=(70, 85, 60))
    boxed, box = apply_click(np.zeros_like(truth), box_click, context)
    assert (boxed > 0)[box].sum() > 0.8 * (truth > 0)[box].sum()
    regions = to_regions(boxed, BRATS)
    assert not (regions[1] & ~regions[0]).any()


@pytest.mark.parametrize(("entry", "message"), [
    ({"voxel": [1, 2], "label": "WT", "positive": True}, "three whole numbers"),
    ({"voxel": [1, 2, 3], "label": "tumour", "positive": True}, "unknown label 'tumour'"),
    ({"voxel": [1, 2, 3], "label": "ET", "positive": "yes"}, "true or false"),
    ([1, 2, 3], "expected an object"),
])
def test_bad_clicks_are_named(entry, message) -> None:
    with pytest.raises(ClickError, match=message):
        parse_click(entry)


def test_a_click_outside_the_grid_is_refused(phantom) -> None:
    _study, truth, context = phantom
    with pytest.raises(ClickError, match=r"outside the grid 80x96x72"):
        apply_click(truth, Click((80, 0, 0), "WT", True), context)
