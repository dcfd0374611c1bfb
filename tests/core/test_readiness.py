"""Readiness: every way a study differs from what the model was trained on, found and said."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from raw_builders import unpack_dicom, with_skull

from brainseg_gui.core.io import load_study
from brainseg_gui.core.phantom import make_phantom, write_phantom_case
from brainseg_gui.core.readiness import (
    PREPARE_HINT,
    assess_readiness,
    grid_problems,
    obliquity,
    skull_check,
)
from brainseg_gui.core.registration import rigid_matrix
from brainseg_gui.core.study import Grid

LPS_1MM = np.diag([-1.0, -1.0, 1.0, 1.0])


def _grid(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), shape: tuple[int, int, int] = (64, 64, 48),
          rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0), base: np.ndarray = LPS_1MM) -> Grid:
    affine = rigid_matrix(rotation_deg, (0.0, 0.0, 0.0)) @ base @ np.diag([*spacing, 1.0])
    return Grid(shape, affine)


def test_a_brats_like_grid_has_no_problem() -> None:
    grid = _grid()
    assert grid_problems({name: grid for name in ("t1", "t1ce", "t2", "flair")}) == []


def test_thick_anisotropic_slices_are_named_with_their_size() -> None:
    problems = grid_problems({"flair": _grid((0.78125, 0.78125, 6.5))})
    assert problems[0] == "slice thickness 6.5 mm is over 2 mm"
    assert problems[1] == "voxels are anisotropic (0.781 x 0.781 x 6.5 mm)"
    assert len(problems) == 2


def test_slightly_anisotropic_thin_voxels_are_anisotropic_not_thick() -> None:
    problems = grid_problems({"t1": _grid((1.0, 1.0, 1.5))})
    assert problems == ["voxels are anisotropic (1 x 1 x 1.5 mm)"]


@pytest.mark.parametrize("degrees", [0.0, 1.0, 12.0, 20.0, 40.0])
def test_obliquity_measures_the_rotation_from_the_nearest_axes(degrees: float) -> None:
    angle, sheared = obliquity(_grid(rotation_deg=(0.0, degrees, 0.0)))
    assert not sheared
    assert angle == pytest.approx(degrees, abs=1e-6)
    problems = grid_problems({"t1": _grid(rotation_deg=(0.0, degrees, 0.0))})
    oblique = [p for p in problems if "oblique" in p]
    assert bool(oblique) == (degrees > 2.0)
    if oblique:
        assert f"{degrees:.0f} degrees" in oblique[0]


def test_a_sheared_grid_is_reported() -> None:
    affine = LPS_1MM.copy()
    affine[0, 1] = 0.3
    _, sheared = obliquity(Grid((10, 10, 10), affine))
    assert sheared
    assert "the voxel axes are not perpendicular (sheared grid)" in grid_problems({"t1": Grid((10, 10, 10), affine)})


def test_another_axis_order_and_other_grids_are_reported_per_group() -> None:
    ras = _grid(base=np.eye(4))
    problems = grid_problems({"t1": _grid(), "t1ce": _grid(), "t2": ras, "flair": _grid((1, 1, 5), (64, 64, 10))})
    assert problems[0].startswith("t1 is on a different grid from flair (t1: 64x64x48 voxels, 1x1x1 mm, LPS; "
                                  "flair: 64x64x10 voxels, 1x1x5 mm, LPS)")
    assert sum("different grid" in p for p in problems) == 3
    assert "t2: orientation RAS differs from the training data's LPS" in problems
    assert "flair: slice thickness 5 mm is over 2 mm" in problems
    assert not any(p.startswith("t1, t1ce:") for p in problems)  # their shared grid is fine


Phantom = tuple[np.ndarray, np.ndarray, Grid]


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    study = make_phantom((80, 96, 72), seed=2, spacing=(2.0, 2.0, 2.0))
    image = np.array(study.images["t1"])
    return image, image > 0, study.grid


def test_skull_check_passes_a_stripped_image_and_flags_an_added_skull(phantom: Phantom) -> None:
    image, brain, grid = phantom
    clean = skull_check(image, grid)
    assert clean.stripped and clean.background_noise == 0.0
    assert clean.foreground_ml == pytest.approx(brain.sum() * grid.voxel_volume_ml, rel=0.1)
    head = skull_check(with_skull(image, brain, grid), grid)
    assert not head.stripped
    assert head.background_noise is not None and head.background_noise > 0.5
    assert head.foreground_ml > clean.foreground_ml
    assert "of the background is non-zero" in head.evidence()


def test_skull_check_flags_a_head_sized_foreground_even_on_a_clean_background(phantom: Phantom) -> None:
    image, _, grid = phantom
    big = Grid(grid.shape, grid.affine @ np.diag([1.5, 1.5, 1.5, 1.0]))  # the same voxels, 3.4x the volume
    check = skull_check(image, big)
    assert check.background_noise == 0.0 and check.foreground_ml > 2200
    assert not check.stripped


def test_a_real_brats_case_is_ready(real_case: Path) -> None:
    readiness = assess_readiness(real_case)
    assert readiness.ready and readiness.problems == () and readiness.missing == ()
    assert readiness.describe() == "BraTS-ready: yes"
    assert readiness.skull is not None and all(check.stripped for check in readiness.skull.values())
    assert readiness.as_dict()["hint"] is None


def test_a_thick_slice_clinical_nrrd_is_not_ready(shared_data: Path) -> None:
    readiness = assess_readiness(shared_data / "nrrd" / "brain1_image.nrrd")
    assert not readiness.ready
    assert readiness.missing == ("t1", "t1ce", "t2")
    assert readiness.problems[:3] == ("slice thickness 6.5 mm is over 2 mm",
                                      "voxels are anisotropic (0.781 x 0.781 x 6.5 mm)",
                                      "orientation LAS differs from the training data's LPS")
    assert readiness.problems[3].startswith("tissue outside the brain")
    text = readiness.describe()
    assert text.startswith("BraTS-ready: no\n  - slice thickness") and text.endswith(PREPARE_HINT)


@pytest.mark.slow
def test_the_sagittal_dicom_head_is_oblique_reoriented_and_has_a_skull(
        shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    readiness = assess_readiness(unpack_dicom(shared_data, tmp_path_factory.getbasetemp()))
    assert not readiness.ready
    assert readiness.problems[0] == "the grid is oblique (axes rotated 15 degrees from the scanner axes)"
    assert readiness.problems[1] == "orientation PIR differs from the training data's LPS"
    assert readiness.problems[2].startswith("tissue outside the brain: the study looks not skull-stripped")
    assert readiness.skull is not None and readiness.skull["t1"].foreground_ml > 2500  # classed T1 (MPRAGE)


def test_a_loaded_study_reports_the_grids_its_files_had(tmp_path: Path) -> None:
    """A study resampled onto one grid when loaded still says its files were on different grids."""
    case = write_phantom_case(tmp_path, seed=1, shape=(40, 48, 36))
    t2 = case / f"{case.name}_t2.nii.gz"
    image = nib.load(t2)
    data = np.asarray(image.dataobj)[:, :, ::2]
    nib.save(nib.Nifti1Image(data, image.affine @ np.diag([1.0, 1.0, 2.0, 1.0])), t2)
    study = load_study(case, allow_resample=True)
    assert study.grid.spacing == (1.0, 1.0, 1.0)
    readiness = assess_readiness(study)
    assert not readiness.ready
    assert readiness.problems[0].startswith("t2 is on a different grid from flair (t2: 40x48x18 voxels, 1x1x2 mm")
    assert "t2: voxels are anisotropic (1 x 1 x 2 mm)" in readiness.problems
    assert readiness.as_dict()["hint"] == PREPARE_HINT
