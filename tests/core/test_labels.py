"""Label conventions <-> nested regions: tables from DESIGN.md, round trips, errors naming values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from brainseg_gui.core.errors import LabelError
from brainseg_gui.core.labels import (
    REGIONS,
    TISSUES,
    LabelConvention,
    check_values,
    convert,
    from_regions,
    guess_convention,
    parse_convention,
    to_regions,
)

CONVENTIONS = list(LabelConvention)


def test_tissue_values_follow_the_design_table() -> None:
    assert REGIONS == ("WT", "TC", "ET") and TISSUES == ("NCR", "ED", "ET")
    assert LabelConvention.BRATS.tissue_values == {"NCR": 1, "ED": 2, "ET": 4}
    assert LabelConvention.BRATS23.tissue_values == {"NCR": 1, "ED": 2, "ET": 3}
    assert LabelConvention.MSD.tissue_values == {"NCR": 2, "ED": 1, "ET": 3}
    assert LabelConvention.BRATS.allowed_values == frozenset({0, 1, 2, 4})
    assert LabelConvention.MSD.allowed_values == frozenset({0, 1, 2, 3})


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_regions_are_nested_per_tissue(convention: LabelConvention) -> None:
    v = convention.tissue_values
    labels = np.array([0, v["NCR"], v["ED"], v["ET"]], dtype=np.uint8)
    wt, tc, et = to_regions(labels, convention)
    assert wt.tolist() == [False, True, True, True]
    assert tc.tolist() == [False, True, False, True]
    assert et.tolist() == [False, False, False, True]


def _labels_in(convention: LabelConvention) -> st.SearchStrategy[np.ndarray]:
    values = sorted(convention.allowed_values)
    return arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
                  elements=st.sampled_from(values))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), convention=st.sampled_from(CONVENTIONS))
def test_labels_regions_labels_round_trip(data: st.DataObject, convention: LabelConvention) -> None:
    labels = data.draw(_labels_in(convention))
    regions = to_regions(labels, convention)
    assert regions.shape == (3, *labels.shape) and regions.dtype == bool
    assert not (regions[1] & ~regions[0]).any() and not (regions[2] & ~regions[1]).any()
    back = from_regions(regions, convention)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), source=st.sampled_from(CONVENTIONS), target=st.sampled_from(CONVENTIONS))
def test_convert_keeps_regions_and_round_trips(data: st.DataObject, source: LabelConvention,
                                               target: LabelConvention) -> None:
    labels = data.draw(_labels_in(source))
    converted = convert(labels, source, target)
    np.testing.assert_array_equal(to_regions(converted, target), to_regions(labels, source))
    np.testing.assert_array_equal(convert(converted, target, source), labels)


def test_brats_to_msd_swaps_ncr_and_edema() -> None:
    brats = np.array([0, 1, 2, 4], dtype=np.int16)
    np.testing.assert_array_equal(convert(brats, LabelConvention.BRATS, LabelConvention.MSD), [0, 2, 1, 3])
    np.testing.assert_array_equal(convert(brats, LabelConvention.BRATS, LabelConvention.BRATS23), [0, 1, 2, 3])


def test_from_regions_priority_for_non_nested_maps() -> None:
    # ET outside TC still counts as ET; TC outside WT counts as NCR.
    wt = np.array([0, 1, 0, 0, 1], bool)
    tc = np.array([0, 0, 1, 0, 1], bool)
    et = np.array([0, 0, 0, 1, 1], bool)
    labels = from_regions(np.stack([wt, tc, et]), LabelConvention.BRATS)
    assert labels.tolist() == [0, 2, 1, 4, 4]
    # Float 0/1 maps (thresholded probabilities) work as well.
    assert from_regions(np.stack([wt, tc, et]).astype(np.float32), LabelConvention.MSD).tolist() == [0, 1, 2, 3, 3]
    with pytest.raises(LabelError, match=r"\(2, 5\)"):
        from_regions(np.stack([wt, tc]), LabelConvention.BRATS)


def test_unknown_values_are_named() -> None:
    with pytest.raises(LabelError, match=r"\[3, 7\].*seg\.nii\.gz"):
        check_values(np.array([0, 1, 3, 7]), LabelConvention.BRATS, source="case/seg.nii.gz")
    with pytest.raises(LabelError, match=r"\[4\]"):
        to_regions(np.array([0, 4]), LabelConvention.MSD)
    with pytest.raises(LabelError, match=r"\[4\]"):
        convert(np.array([4]), LabelConvention.BRATS23, LabelConvention.BRATS)
    check_values(np.array([0, 1, 2, 4], dtype=np.uint16), LabelConvention.BRATS)


def test_parse_convention() -> None:
    assert parse_convention("BraTS") is LabelConvention.BRATS
    assert parse_convention("brats23") is LabelConvention.BRATS23
    assert parse_convention(LabelConvention.MSD) is LabelConvention.MSD
    with pytest.raises(LabelError, match="'nnunet'.*brats, brats23, msd"):
        parse_convention("nnunet")


def test_guess_convention() -> None:
    assert guess_convention(np.array([0, 1, 2, 4])) is LabelConvention.BRATS
    assert guess_convention(np.array([0, 1, 2])) is LabelConvention.BRATS  # no 3, no 4: BraTS
    assert guess_convention(np.zeros(3, np.uint8)) is LabelConvention.BRATS
    assert guess_convention(np.array([0, 1, 3])) is LabelConvention.BRATS23
    with pytest.raises(LabelError, match=r"mix 3 and 4"):
        guess_convention(np.array([0, 3, 4]))
    with pytest.raises(LabelError, match=r"\[5\].*x\.nii"):
        guess_convention(np.array([0, 5]), source="x.nii")


def test_real_case_regions_match_the_readme_counts(shared_data) -> None:  # type: ignore[no-untyped-def]
    import nibabel as nib

    # BraTS2021_00019 stores its seg as uint16; counts 1:1605 2:131017 4:10375.
    seg = np.asanyarray(nib.load(shared_data / "brats2021" / "BraTS2021_00019" /
                                 "BraTS2021_00019_seg.nii.gz").dataobj)
    assert seg.dtype == np.uint16
    convention = guess_convention(seg)
    assert convention is LabelConvention.BRATS
    regions = to_regions(seg, convention)
    assert [int(r.sum()) for r in regions] == [1605 + 131017 + 10375, 1605 + 10375, 10375]
    np.testing.assert_array_equal(from_regions(regions, convention), seg)
