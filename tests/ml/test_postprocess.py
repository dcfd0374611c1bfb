"""Post-processing: nesting, small-ET relabelling, component removal, threshold tuning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml.postprocess import (
    PostprocessSettings,
    make_nested,
    postprocess,
    relabel_small_et,
    remove_small_components,
    tune_et_threshold,
    tune_min_component,
)

WT, TC, ET = 0, 1, 2


def _nested(regions: np.ndarray) -> bool:
    return bool(np.all(regions[ET] <= regions[TC]) and np.all(regions[TC] <= regions[WT]))


region_arrays = arrays(dtype=bool, shape=st.tuples(st.just(3), st.integers(1, 4), st.integers(1, 4),
                                                   st.integers(1, 4)))


@settings(max_examples=60, deadline=None)
@given(region_arrays)
def test_make_nested_is_nested_idempotent_and_only_grows(regions: np.ndarray) -> None:
    nested = make_nested(regions)
    assert _nested(nested)
    assert np.array_equal(make_nested(nested), nested)
    assert np.all(nested >= regions)  # nothing predicted is lost
    assert np.array_equal(nested[ET], regions[ET])


@settings(max_examples=60, deadline=None)
@given(region_arrays, st.integers(0, 70))
def test_relabel_small_et_keeps_nesting_and_whole_tumour(regions: np.ndarray, threshold: int) -> None:
    nested = make_nested(regions)
    out = relabel_small_et(nested, threshold)
    assert _nested(out)
    assert np.array_equal(out[WT], nested[WT])
    assert np.array_equal(out[TC], nested[TC])
    et = int(nested[ET].sum())
    assert np.array_equal(out[ET], nested[ET] if et >= threshold else np.zeros_like(nested[ET]))


def test_make_nested_fills_outer_regions() -> None:
    regions = np.zeros((3, 4, 4, 4), dtype=bool)
    regions[ET, 1, 1, 1] = True
    regions[TC, 2, 2, 2] = True
    out = make_nested(regions)
    assert out[TC, 1, 1, 1] and out[WT, 1, 1, 1] and out[WT, 2, 2, 2]
    assert int(out[WT].sum()) == 2 and int(out[TC].sum()) == 2 and int(out[ET].sum()) == 1
    assert not regions[WT].any()  # input untouched


def test_relabel_small_et_threshold_is_strict() -> None:
    regions = np.zeros((3, 10, 10, 10), dtype=bool)
    regions[:, :2, :5, :1] = True  # 10 ET voxels, nested
    assert int(relabel_small_et(regions, 10)[ET].sum()) == 10  # exactly at the threshold: kept
    small = relabel_small_et(regions, 11)
    assert int(small[ET].sum()) == 0
    assert int(small[TC].sum()) == 10  # became necrosis
    assert int(relabel_small_et(regions, 0)[ET].sum()) == 10


def test_remove_small_components_keeps_largest_and_big_ones() -> None:
    regions = np.zeros((3, 20, 20, 20), dtype=bool)
    regions[WT, 2:8, 2:8, 2:8] = True  # 216 voxels
    regions[:, 3:5, 3:5, 3:5] = True
    regions[WT, 15, 15, 15] = True  # a 1-voxel speck with ET inside
    regions[:, 15, 15, 15] = True
    regions[WT, 12:15, 2:5, 2:5] = True  # 27 voxels, separate
    out = remove_small_components(regions, 20)
    assert not out[:, 15, 15, 15].any()
    assert out[WT, 13, 3, 3]
    assert int(out[WT].sum()) == 216 + 27
    only_largest = remove_small_components(regions, 10_000)
    assert int(only_largest[WT].sum()) == 216 and int(only_largest[ET].sum()) == 8
    assert np.array_equal(remove_small_components(regions, 0), regions)


def test_postprocess_thresholds_then_nests() -> None:
    probabilities = np.zeros((3, 6, 6, 6), dtype=np.float32)
    probabilities[ET, 1, 1, 1] = 0.9
    probabilities[TC, 2, 2, 2] = 0.51
    probabilities[WT, 3, 3, 3] = 0.5  # not above the threshold
    out = postprocess(probabilities, PostprocessSettings(threshold=0.5))
    assert _nested(out)
    assert int(out[WT].sum()) == 2 and int(out[ET].sum()) == 1
    relabelled = postprocess(probabilities, PostprocessSettings(threshold=0.5, et_min_voxels=2))
    assert int(relabelled[ET].sum()) == 0 and int(relabelled[TC].sum()) == 2


def test_settings_from_card_and_scaling() -> None:
    card = PostprocessSettings.from_card({"threshold": 0.4, "et_min_voxels": 200})
    assert card == PostprocessSettings(0.4, 200, 0)
    assert PostprocessSettings.from_card(None) == PostprocessSettings()
    assert card.scaled_to(8.0).et_min_voxels == 25  # 2 mm voxels hold 8 mm^3
    with pytest.raises(ModelError, match="unknown post-processing settings \\['colour'\\]"):
        PostprocessSettings.from_card({"colour": 1})
    with pytest.raises(ModelError, match="threshold"):
        PostprocessSettings.from_card({"threshold": 1.5})


def test_tune_et_threshold_picks_the_dice_maximising_value() -> None:
    shape = (3, 10, 10, 10)
    # case 1: a false 30-voxel ET where the expert has none -> wants threshold > 30
    false_et = np.zeros(shape, dtype=bool)
    false_et[:, :3, :10, :1] = True
    no_et = false_et.copy()
    no_et[ET] = False
    # case 2: a true 60-voxel ET -> wants threshold <= 60
    true_et = np.zeros(shape, dtype=bool)
    true_et[:, :6, :10, :1] = True
    choice = tune_et_threshold([false_et, true_et], [no_et, true_et], candidates=(0, 10, 31, 50, 61, 100))
    assert choice.min_voxels == 31
    assert choice.mean_dice[0] == pytest.approx(0.5)
    assert choice.mean_dice[31] == pytest.approx(1.0)
    assert choice.mean_dice[61] == pytest.approx(0.5)
    # on 2 mm grids (8 mm^3 a voxel) the 30 voxels hold 240 mm^3
    scaled = tune_et_threshold([false_et], [no_et], candidates=(0, 200, 300), voxel_volumes_mm3=[8.0])
    assert scaled.min_voxels == 300


def test_tune_min_component_removes_only_what_helps() -> None:
    target = np.zeros((3, 20, 20, 20), dtype=bool)
    target[:, 2:8, 2:8, 2:8] = True  # 216 voxels
    speck = target.copy()
    speck[WT, 15:17, 15:17, 15:17] = True  # an 8-voxel false positive far away
    choice = tune_min_component([speck], [target], candidates=(0, 5, 9, 500))
    assert choice.min_voxels == 9  # 5 keeps the speck; 9 and 500 remove it (the largest always stays): tie
    assert choice.mean_dice[0] < choice.mean_dice[9] == pytest.approx(1.0)
    clean = tune_min_component([target], [target], candidates=(0, 100))
    assert clean.min_voxels == 0  # a tie keeps the step off
