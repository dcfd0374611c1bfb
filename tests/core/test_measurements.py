"""Measurements in world mm: rulers on anisotropic / LPS / oblique grids, ROI statistics, RANO, JSON."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui.core.measurements import (
    EllipseRoi,
    MeasurementError,
    MeasurementSet,
    Ruler,
    angle_deg,
    distance_mm,
    ellipse_mask,
    rano_from_axes,
    roi_statistics,
    voxel_volume_ml,
)
from brainseg_gui.core.rano import PERPENDICULAR_TOLERANCE_DEG, rano

#: The toy study's grid seen in RAS voxel order (tests/ui/conftest.py): 1.5 x 1.5 x 4 mm, stored LPS.
TOY_RAS_AFFINE = np.array([[1.5, 0, 0, -29.25], [0, 1.5, 0, -35.25], [0, 0, 4.0, -38.0], [0, 0, 0, 1.0]])


def test_ruler_length_uses_each_axis_spacing() -> None:
    a, b = (2.0, 3.0, 1.0), (6.0, 3.0, 4.0)  # 4 voxels in x (6 mm), 3 slices in z (12 mm)
    assert distance_mm(TOY_RAS_AFFINE, a, b) == pytest.approx(math.hypot(6.0, 12.0))
    assert distance_mm((1.5, 1.5, 4.0), a, b) == pytest.approx(math.hypot(6.0, 12.0))
    assert Ruler(a, b).length_mm(TOY_RAS_AFFINE) != pytest.approx(5.0)  # not voxels
    assert Ruler(a, b).axis() == 1


def test_ruler_length_on_an_lps_file_grid_matches_world_points() -> None:
    """The same two voxels measured through the file's LPS affine and through world points agree."""
    lps = np.array([[-1.5, 0, 0, 29.25], [0, -1.5, 0, 35.25], [0, 0, 4.0, -38.0], [0, 0, 0, 1.0]])
    a, b = np.array([3.25, 7.5, 2.0]), np.array([10.0, 1.0, 9.0])
    world = [(lps @ [*p, 1.0])[:3] for p in (a, b)]
    assert distance_mm(lps, a, b) == pytest.approx(float(np.linalg.norm(world[1] - world[0])))


def test_ruler_length_on_an_oblique_sheared_grid() -> None:
    rotation = np.array([[math.cos(0.4), -math.sin(0.4), 0], [math.sin(0.4), math.cos(0.4), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.2, 3.0])
    a, b = (0.0, 0.0, 0.0), (5.0, 5.0, 0.0)
    assert distance_mm(affine, a, b) == pytest.approx(math.hypot(4.0, 6.0))


def test_a_display_volume_like_object_gives_its_affine() -> None:
    class Volume:
        ras_affine = TOY_RAS_AFFINE

    assert distance_mm(Volume(), (0, 0, 0), (0, 0, 1)) == pytest.approx(4.0)
    assert voxel_volume_ml(Volume()) == pytest.approx(1.5 * 1.5 * 4.0 / 1000)


def test_ellipse_mask_on_each_plane() -> None:
    shape = (20, 30, 10)
    axial = ellipse_mask(shape, 2, 4, (10.0, 15.0), (3.0, 5.0))
    assert axial[:, :, 4].sum() == axial.sum() > 0
    assert axial[10, 15, 4] and axial[13, 15, 4] and axial[10, 20, 4]
    assert not axial[14, 15, 4] and not axial[10, 21, 4] and not axial[12, 19, 4]
    u, v = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    assert axial[:, :, 4].sum() == int((((u - 10) / 3.0) ** 2 + ((v - 15) / 5.0) ** 2 <= 1).sum())
    coronal = ellipse_mask(shape, 1, 7, (10.0, 5.0), (4.0, 2.0))  # in-plane axes x, z
    assert coronal[:, 7, :].sum() == coronal.sum() and coronal[10, 7, 5] and coronal[10, 7, 7]
    assert not ellipse_mask(shape, 0, 25, (1.0, 1.0), (2.0, 2.0)).any()  # slice outside: nothing
    roi = EllipseRoi(1, 7, (10.0, 5.0), (4.0, 2.0))
    np.testing.assert_array_equal(roi.mask(shape)[roi.where()], roi.slice_mask(shape))


def test_roi_statistics_match_numpy() -> None:
    rng = np.random.default_rng(3)
    images = {"t1": rng.normal(100, 20, (12, 14, 6)).astype(np.float32),
              "flair": rng.normal(300, 50, (12, 14, 6)).astype(np.float32)}
    mask = ellipse_mask((12, 14, 6), 2, 3, (6.0, 7.0), (4.0, 3.0))
    stats = roi_statistics(images, mask, voxel_volume_ml(TOY_RAS_AFFINE))
    assert stats.voxels == int(mask.sum())
    assert stats.volume_ml == pytest.approx(mask.sum() * 1.5 * 1.5 * 4.0 / 1000)
    for name, image in images.items():
        values = image[mask].astype(np.float64)
        s = stats.sequences[name]
        assert (s.mean, s.sd, s.minimum, s.maximum) == pytest.approx(
            (values.mean(), values.std(), values.min(), values.max()))
    empty = roi_statistics(images, np.zeros((12, 14, 6), bool), 0.009)
    assert empty.voxels == 0 and empty.volume_ml == 0 and not empty.sequences


def _tilted_ellipse(shape, spacing, semi_axes_mm, angle_deg_, z_slices):
    """Bool volume with an ellipse (semi-axes in mm, rotated in the axial plane) on some slices."""
    x, y = np.meshgrid(np.arange(shape[0]) * spacing[0], np.arange(shape[1]) * spacing[1], indexing="ij")
    cx, cy = shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2
    t = math.radians(angle_deg_)
    u = (x - cx) * math.cos(t) + (y - cy) * math.sin(t)
    v = -(x - cx) * math.sin(t) + (y - cy) * math.cos(t)
    mask = np.zeros(shape, bool)
    for z, scale in z_slices.items():
        mask[:, :, z] = (u / (semi_axes_mm[0] * scale)) ** 2 + (v / (semi_axes_mm[1] * scale)) ** 2 <= 1
    return mask


def _axis_direction(affine, segment) -> np.ndarray:
    vector = affine[:3, :3] @ (np.asarray(segment[1]) - np.asarray(segment[0]))
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.3, 3.0)])
def test_rano_of_a_tilted_ellipse(spacing) -> None:
    shape = (160, 110, 6)
    mask = _tilted_ellipse(shape, spacing, (20.0, 10.0), 30.0, {2: 0.5, 3: 1.0, 4: 0.8})
    result = rano(mask, spacing)
    assert result is not None and result.slice_z == 3  # the largest cross-section
    # outlines run along voxel edges: within about one voxel of the true 40 x 20 mm
    assert result.long_mm == pytest.approx(40.0, abs=1.5)
    assert result.short_mm == pytest.approx(20.0, abs=1.5)
    assert result.product_mm2 == pytest.approx(result.long_mm * result.short_mm)
    assert abs(result.angle_deg - 90) <= PERPENDICULAR_TOLERANCE_DEG
    direction = _axis_direction(np.diag([*spacing, 1.0]), result.long_axis)
    assert abs(direction @ [math.cos(math.radians(30)), math.sin(math.radians(30)), 0]) > math.cos(math.radians(4))
    assert all(p[2] == 3 for p in (*result.long_axis, *result.short_axis)) and not result.adjusted


def test_rano_of_a_rectangle_is_its_diagonal_and_the_widest_perpendicular() -> None:
    """A W x H mm rectangle: the longest chord is the diagonal D; the longest chord perpendicular to
    it is H * D / W (the chords between the long sides)."""
    spacing = (0.5, 2.0, 3.0)
    mask = np.zeros((100, 20, 3), bool)
    mask[20:80, 5:11, 1] = True  # 60 x 6 voxels = 30 x 12 mm
    result = rano(mask, spacing)
    assert result is not None
    diagonal = math.hypot(30.0, 12.0)
    assert result.long_mm == pytest.approx(diagonal, abs=1.0)
    assert result.short_mm == pytest.approx(12.0 * diagonal / 30.0, abs=1.0)
    assert abs(result.angle_deg - 90) <= PERPENDICULAR_TOLERANCE_DEG


def test_rano_measures_a_ring_across_its_centre_and_picks_the_larger_lesion() -> None:
    mask = np.zeros((80, 80, 2), bool)
    x, y = np.meshgrid(np.arange(80), np.arange(80), indexing="ij")
    r = np.hypot(x - 25, y - 25)
    mask[:, :, 0] = (r <= 15) & (r >= 11)  # a rim-enhancing lesion 30 mm across
    mask[60:70, 60:70, 0] = True  # a smaller lesion on the same slice
    result = rano(mask, (1.0, 1.0, 1.0))
    assert result is not None
    assert result.long_mm == pytest.approx(31.0, abs=1.0) and result.short_mm == pytest.approx(31.0, abs=1.5)
    assert all(np.hypot(p[0] - 25, p[1] - 25) > 14 for p in result.long_axis)


def test_rano_of_an_empty_mask_is_none_and_a_single_voxel_is_one_voxel() -> None:
    assert rano(np.zeros((5, 5, 5), bool), (1.0, 1.0, 1.0)) is None
    one = np.zeros((5, 5, 5), bool)
    one[2, 2, 2] = True
    result = rano(one, (2.0, 2.0, 5.0))
    assert result is not None and result.long_mm == pytest.approx(2.0) and result.short_mm == pytest.approx(2.0)


def test_adjusted_axes_are_remeasured_and_keep_their_roles() -> None:
    long_axis = ((0.0, 0.0, 4.0), (10.0, 0.0, 4.0))
    short_axis = ((5.0, -2.0, 4.0), (5.0, 2.0, 4.0))
    result = rano_from_axes(TOY_RAS_AFFINE, long_axis, short_axis)
    assert (result.long_mm, result.short_mm, result.slice_z) == pytest.approx((15.0, 6.0, 4))
    assert result.adjusted and result.angle_deg == pytest.approx(90.0)
    dragged_longer = rano_from_axes(TOY_RAS_AFFINE, short_axis, long_axis)  # no swap under the mouse
    assert dragged_longer.long_axis == short_axis and dragged_longer.short_mm == pytest.approx(15.0)
    assert dragged_longer.product_mm2 == pytest.approx(90.0)
    assert angle_deg(TOY_RAS_AFFINE, long_axis, ((0, 0, 4), (1, 1, 4))) == pytest.approx(45.0)


def test_real_case_rano(real_case) -> None:
    image = nib.as_closest_canonical(nib.load(real_case / f"{real_case.name}_seg.nii.gz"))
    et = np.asarray(image.dataobj) == 4
    result = rano(et, image.affine)
    assert result is not None
    assert result.long_mm >= result.short_mm > 0
    assert abs(result.angle_deg - 90) <= PERPENDICULAR_TOLERANCE_DEG
    assert et[:, :, result.slice_z].any()
    xs, ys = np.nonzero(et[:, :, result.slice_z])
    spacing = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))
    box_diagonal = math.hypot((np.ptp(xs) + 1) * spacing[0], (np.ptp(ys) + 1) * spacing[1])
    assert result.long_mm <= box_diagonal + 1e-6
    assert result.long_mm >= 0.5 * box_diagonal  # a diameter, not a fragment
    for point in (*result.long_axis, *result.short_axis):  # ends on the lesion's outline
        x, y = round(point[0]), round(point[1])
        assert et[max(x - 1, 0):x + 2, max(y - 1, 0):y + 2, result.slice_z].any()


def test_json_round_trip_keeps_every_measurement() -> None:
    rano_measurement = rano_from_axes(TOY_RAS_AFFINE, ((1.0, 2.0, 3.0), (9.5, 2.0, 3.0)),
                                      ((5.0, 0.0, 3.0), (5.0, 4.25, 3.0)), adjusted=True)
    saved = MeasurementSet((40, 48, 20), tuple(tuple(row) for row in TOY_RAS_AFFINE),
                           (Ruler((1.0, 2.5, 3.0), (4.0, 5.0, 3.0)),), (EllipseRoi(2, 3, (5.0, 6.5), (2.0, 3.0)),),
                           rano_measurement)
    loaded = MeasurementSet.from_json(saved.to_json())
    assert loaded == saved


@pytest.mark.parametrize("text, says", [
    ("{oops", "damaged"),
    ('{"format": "something else"}', "not a BrainSeg measurement file"),
    ('{"format": "brainseg-measurements", "version": 99}', "version 99"),
    ('{"format": "brainseg-measurements", "version": 1, "grid": {"shape": [1, 2]}}', "damaged"),
])
def test_bad_json_raises_one_clear_line(text: str, says: str) -> None:
    with pytest.raises(MeasurementError) as error:
        MeasurementSet.from_json(text, source="m.json")
    assert says in str(error.value) and "m.json" in str(error.value) and "\n" not in str(error.value)
