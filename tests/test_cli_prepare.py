"""`brainseg prepare`, the readiness `info` reports, and `predict` refusing (or preparing) raw studies."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as ornt

from tests.cli_support import one_error_line, run

TINY = (40, 48, 36)




@pytest.fixture(scope="module")
def raw_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny phantom whose t2 is stored in RAS axis order: same anatomy, another grid, not ready."""
    from brainseg_gui.core.phantom import write_phantom_case

    case = write_phantom_case(tmp_path_factory.mktemp("raw_cli"), seed=3, shape=TINY)
    t2 = case / f"{case.name}_t2.nii.gz"
    image = nib.load(t2)
    transform = ornt.ornt_transform(ornt.io_orientation(image.affine), ornt.axcodes2ornt(("R", "A", "S")))
    data = ornt.apply_orientation(np.asarray(image.dataobj), transform)
    affine = image.affine @ ornt.inv_ornt_aff(transform, image.shape)
    nib.save(nib.Nifti1Image(data, affine), t2)
    return case


def test_prepare_writes_the_case_and_says_what_it_did(capsys: pytest.CaptureFixture[str], raw_case: Path,
                                                      tmp_path: Path) -> None:
    status, out, err = run(capsys, "prepare", raw_case, "-o", tmp_path / "out")
    assert status == 0, err
    case_id = raw_case.name
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"{case_id}_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair", "brainmask", "seg")]
                           + [f"{case_id}_prepare.json", ".brainseg-output.json"])  # the marker: prepare's folder
    # (the case's ground truth comes along onto the prepared grid, so the prepared case can be scored)
    assert f"case:        {case_id}" in out
    assert "grid:        40 x 48 x 36 voxels, 1 x 1 x 1 mm, LPS" in out
    assert "t2: orientation RAS differs from the training data's LPS" in out
    assert "  t1ce   reference" in out and "  t2     rotation " in out
    assert "already skull-stripped" in out
    t2 = nib.load(tmp_path / "out" / f"{case_id}_t2.nii.gz")
    flair = nib.load(raw_case / f"{case_id}_flair.nii.gz")
    np.testing.assert_array_equal(t2.affine, flair.affine)  # back in LPS on the reference's grid
    status, out, _ = run(capsys, "info", tmp_path / "out")
    assert status == 0 and out.rstrip().endswith("BraTS-ready: yes")


def test_prepare_json_prints_the_record(capsys: pytest.CaptureFixture[str], raw_case: Path, tmp_path: Path) -> None:
    status, out, err = run(capsys, "prepare", raw_case, "-o", tmp_path, "--json", "--reference", "flair",
                           "--case-id", "renamed", "--no-skull-strip")
    assert status == 0, err
    record = json.loads(out)
    assert record["format"] == "brainseg-prepare" and record["case_id"] == "renamed"
    assert record["reference"] == "flair" and record["sequences"]["flair"]["registered"] is False
    assert record["brain_extraction"]["method"].startswith("none (skull stripping off)")
    assert (tmp_path / "renamed_prepare.json").is_file()


def test_prepare_a_single_nrrd_named_as_a_sequence(capsys: pytest.CaptureFixture[str], shared_data: Path,
                                                   tmp_path: Path) -> None:
    status, out, err = run(capsys, "prepare", shared_data / "nrrd" / "brain2_image.nrrd", "--as", "t1ce",
                           "-o", tmp_path, "--no-skull-strip", "--resolution", "2")
    assert status == 0, err
    assert "grid:        100 x 100 x 72 voxels, 2 x 2 x 2 mm, LPS" in out
    assert "missing:     t1, t2, flair" in out
    assert "slice thickness 6.5 mm is over 2 mm" in out
    assert (tmp_path / "brain2_image_t1ce.nii.gz").is_file()
    assert "brainseg: warning: brain2_image: missing sequences: t1, t2, flair" in err


@pytest.mark.parametrize(("argv", "expected"), [
    (["prepare", "-o", "{tmp}/out"], "give STUDY or at least one of --t1/--t1ce/--t2/--flair"),
    (["prepare", "{tmp}/nothing", "-o", "{tmp}/out"], "No such file or folder"),
    (["prepare", "{case}", "-o", "{tmp}/file.txt"], "is a file; give a folder"),
    (["prepare", "--t1", "{tmp}/none.nii.gz", "-o", "{tmp}/out"], "No such file or folder"),
    (["prepare", "{case}", "-o", "{tmp}/out", "--fractional-threshold", "2"], "expected a number in (0, 1), got 2"),
    (["prepare", "{case}"], "the following arguments are required: -o/--output"),
])
def test_prepare_mistakes_are_one_line(capsys: pytest.CaptureFixture[str], raw_case: Path, tmp_path: Path,
                                       argv: list[str], expected: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    status, _, err = run(capsys, *[a.format(tmp=tmp_path, case=raw_case) for a in argv])
    assert status == 2
    assert expected in one_error_line(err)


def test_info_reports_readiness(capsys: pytest.CaptureFixture[str], raw_case: Path) -> None:
    status, out, err = run(capsys, "info", raw_case)
    assert status == 0, err
    assert "BraTS-ready: no\n  - t2 is on a different grid from flair" in out
    assert "  - t2: orientation RAS differs from the training data's LPS" in out
    assert out.rstrip().endswith("prepare it first: brainseg prepare STUDY -o OUT_DIR (or Prepare in the viewer)")
    status, out, _ = run(capsys, "info", raw_case, "--json")
    readiness = json.loads(out)["readiness"]
    assert readiness["ready"] is False and len(readiness["problems"]) == 2
    assert readiness["hint"].startswith("prepare it first")
    status, out, _ = run(capsys, "info", "--demo", "--json")
    assert json.loads(out)["readiness"] == {"ready": True, "problems": [], "blocking": [], "missing": [],
                                                   "hint": None}


def test_predict_refuses_a_study_that_is_not_ready(capsys: pytest.CaptureFixture[str], raw_case: Path,
                                                   tmp_path: Path) -> None:
    status, _, err = run(capsys, "predict", raw_case, "-o", tmp_path / "p.nii.gz", "--model", tmp_path / "none")
    assert status == 2
    line = one_error_line(err)
    assert "No such file or folder" in line  # the model path is checked first
    status, _, err = run(capsys, "predict", raw_case, "-o", tmp_path / "p.nii.gz")
    line = one_error_line(err)
    assert status == 2 and f"{raw_case.name} is not BraTS-ready (t2 is on a different grid" in line
    assert "brainseg prepare STUDY -o OUT_DIR" in line and "--prepare" in line
    assert not (tmp_path / "p.nii.gz").exists()


@pytest.mark.parametrize(("extra", "expected"), [
    (["--prepare", "--save-probabilities"], "--save-probabilities is not available with --prepare"),
    (["--map-to", "t2"], "--map-to needs --prepare"),
])
def test_predict_prepare_option_clashes(capsys: pytest.CaptureFixture[str], raw_case: Path, tmp_path: Path,
                                        extra: list[str], expected: str) -> None:
    status, _, err = run(capsys, "predict", raw_case, "-o", tmp_path / "p.nii.gz", *extra)
    assert status == 2 and expected in one_error_line(err)


def test_predict_prepare_says_early_that_sequences_are_missing(capsys: pytest.CaptureFixture[str],
                                                                shared_data: Path, tmp_path: Path) -> None:
    status, _, err = run(capsys, "predict", shared_data / "nrrd" / "brain1_image.nrrd", "-o", tmp_path / "p.nii.gz",
                         "--prepare")
    assert status == 2
    assert "brain1_image has no t1, t1ce, t2: add --allow-missing" in one_error_line(err)


def test_predict_prepare_maps_the_labels_back_onto_the_original_grid(
        capsys: pytest.CaptureFixture[str], raw_case: Path, tiny_model: Path, tmp_path: Path) -> None:
    output = tmp_path / "pred.nii.gz"
    status, out, err = run(capsys, "predict", raw_case, "-o", output, "--model", tiny_model, "--device", "cpu",
                           "--prepare", "--map-to", "t2")
    assert status == 0, err
    assert f"written: {output} (on the original t2 grid: 40x48x36 voxels, 1x1x1 mm, RAS)" in out
    written = nib.load(output)
    source = nib.load(raw_case / f"{raw_case.name}_t2.nii.gz")
    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1, 2, 4}
    sidecar = json.loads((tmp_path / "pred.json").read_text())
    assert sidecar["prepared"]["mapped_to"] == "t2"
    assert sidecar["prepared"]["record"]["format"] == "brainseg-prepare"


def test_a_cohort_of_raw_cases_is_refused_or_prepared_case_by_case(
        capsys: pytest.CaptureFixture[str], raw_case: Path, tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(raw_case, tmp_path / "cases" / "a")
    shutil.copytree(raw_case, tmp_path / "cases" / "b")
    for path in (tmp_path / "cases" / "b").iterdir():
        path.rename(path.with_name(path.name.replace(raw_case.name, "other")))
    status, _, err = run(capsys, "predict", tmp_path / "cases", "-o", tmp_path / "out")
    assert status == 2 and "is not BraTS-ready" in one_error_line(err) and "--prepare" in err
    assert not (tmp_path / "out").exists()
    status, out, err = run(capsys, "predict", tmp_path / "cases", "-o", tmp_path / "out", "--prepare", "--map-to", "t2",
                           "--model", tiny_model, "--device", "cpu", "--workers", "0")
    assert status == 0, err
    assert "2 segmented" in out
    for case_id in (raw_case.name, "other"):
        written = nib.load(tmp_path / "out" / f"{case_id}_pred.nii.gz")
        source = nib.load(tmp_path / "cases" / ("a" if case_id == raw_case.name else "b") / f"{case_id}_t2.nii.gz")
        np.testing.assert_array_equal(written.affine, source.affine)  # on the original t2 grid
        sidecar = json.loads((tmp_path / "out" / f"{case_id}_pred.json").read_text())
        assert sidecar["prepared"]["mapped_to"] == "t2" and sidecar["provenance"]["prepare"] is not None
    assert "prepared, labels on the t2 grid" in (tmp_path / "out" / "cohort.csv").read_text()


def test_a_reoriented_regridded_brats_case_is_segmented_without_preparing(
        capsys: pytest.CaptureFixture[str], real_case: Path, tiny_model: Path, tmp_path: Path) -> None:
    """LAS, 182x218x182 (MNI-like), skull-stripped, co-registered: re-oriented exactly, never refused."""
    case = tmp_path / "MNI01"
    case.mkdir()
    for name in ("t1", "t1ce", "t2", "flair", "seg"):
        image = nib.load(real_case / f"{real_case.name}_{name}.nii.gz")
        data = np.asarray(image.dataobj)[:, ::-1, :]  # LPS -> LAS
        affine = image.affine @ np.array([[1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        regridded = np.zeros((182, 218, 182), data.dtype)
        regridded[:, :, 13:168] = data[29:211, 11:229, :]
        affine = affine.copy()
        affine[:3, 3] = (affine @ np.array([29, 11, -13, 1.0]))[:3]
        nib.save(nib.Nifti1Image(regridded, affine), case / f"MNI01_{name}.nii.gz")
    status, out, err = run(capsys, "info", case)
    assert status == 0, err
    assert "BraTS-ready: yes, re-oriented on the fly" in out and "orientation LAS" in out
    output = tmp_path / "pred.nii.gz"
    status, out, err = run(capsys, "predict", case, "-o", output, "--model", tiny_model, "--device", "cpu")
    assert status == 0, err
    written = nib.load(output)
    assert written.shape == (182, 218, 182)
    np.testing.assert_allclose(written.affine, nib.load(case / "MNI01_t1ce.nii.gz").affine, atol=1e-5)
