"""`brainseg export` through `cli.main`: NIfTI in each convention on the exact input grid with its
provenance, refusals (inputs never, earlier exports only with --force), --from-journal, DICOM-SEG
read back voxel for voxel, meshes, the overview PNG and the report; on phantoms and a real case."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui import RESEARCH_USE_NOTE, cli
from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.io import load_study
from brainseg_gui.core.journal import Journal, journal_path, read_journal
from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.core.phantom import write_phantom_case

BRATS, MSD = LabelConvention.BRATS, LabelConvention.MSD


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = cli.main(["export", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journals go to a temporary folder, never the user's own."""
    folder = tmp_path / "state"
    monkeypatch.setenv("BRAINSEG_STATE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_case(tmp_path_factory.mktemp("cases"), seed=3, shape=(48, 56, 40), case_id="ph")


def masks(case: Path, folder: Path) -> tuple[np.ndarray, np.ndarray, Path, Path]:
    """An 'AI' mask (the truth minus a slab) with a predict-style sidecar, and a corrected one."""
    study = load_study(case)
    ai = study.labels.copy()
    ai[:, :, 24:] = 0
    corrected = ai.copy()
    corrected[20:23, 20:23, 24:27] = 4  # 27 ET voxels painted back
    ai_path, mask_path = folder / "ai.nii.gz", folder / "corrected.nii.gz"
    for path, labels in ((ai_path, ai), (mask_path, corrected)):
        nib.save(nib.Nifti1Image(labels, study.grid.affine), path)
    (folder / "ai.json").write_text(json.dumps({"model_version": "m-42", "label_convention": "brats"}))
    return ai, corrected, ai_path, mask_path


def test_corrected_mask_in_msd_with_provenance(capsys, phantom: Path, tmp_path: Path) -> None:
    ai, corrected, ai_path, mask_path = masks(phantom, tmp_path)
    out = tmp_path / "out.nii.gz"
    status, printed, err = run(capsys, phantom, "--mask", mask_path, "--ai-mask", ai_path, "-o", out, "--labels", "msd")
    assert status == 0, err
    assert str(out) in printed and str(tmp_path / "out.json") in printed
    assert "27 voxels changed" in printed and "model m-42" in printed
    image = nib.load(out)
    np.testing.assert_array_equal(np.asarray(image.dataobj), convert(corrected, BRATS, MSD))
    assert np.array_equal(image.affine, nib.load(phantom / "ph_seg.nii.gz").affine)
    assert image.get_data_dtype() == np.uint8
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["model_version"] == "m-42" and sidecar["edited"] is True
    assert sidecar["label_convention"] == "msd" and sidecar["voxels_changed"] == 27
    assert sidecar["voxels_changed_per_class"]["ET"] == {"added": 27, "removed": 0}
    assert sidecar["voxels_changed_per_region"]["WT"]["added"] == int(((corrected > 0) & (ai == 0)).sum())
    assert set(sidecar["source_files"]) == {"t1", "t1ce", "t2", "flair", "seg"}
    assert sidecar["mask_origin"] == f"AI mask {ai_path} (model m-42), corrected as the label map {mask_path}"


def test_never_an_input_and_an_earlier_export_only_with_force(capsys, phantom: Path, tmp_path: Path) -> None:
    _, corrected, ai_path, mask_path = masks(phantom, tmp_path)
    out = tmp_path / "out.nii.gz"
    assert run(capsys, phantom, "--mask", mask_path, "-o", out)[0] == 0
    first = out.read_bytes()
    status, _, err = run(capsys, phantom, "--mask", mask_path, "-o", out, "--labels", "msd")
    assert status == 2 and "exists already" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == first
    assert run(capsys, phantom, "--mask", mask_path, "-o", out, "--labels", "msd", "--force")[0] == 0
    assert out.read_bytes() != first
    protected = {
        phantom / "ph_seg.nii.gz": ("-o",),  # the study's own label file
        phantom / "ph_t1.nii.gz": ("--png",),
        mask_path: ("-o",),  # the mask being exported
        ai_path: ("-o",),
        tmp_path / "ai.nii": ("-o",),  # its sidecar ai.json would be replaced
    }
    for target, option in protected.items():
        before = {p: p.read_bytes() for p in tmp_path.glob("*") if p.is_file()}
        status, _, err = run(capsys, phantom, "--mask", mask_path, "--ai-mask", ai_path, *option, target, "--force")
        assert status == 2 and "input" in err, (target, err)
        assert {p: p.read_bytes() for p in tmp_path.glob("*") if p.is_file()} == before
    np.testing.assert_array_equal(np.asarray(nib.load(mask_path).dataobj), corrected)
    status, _, err = run(capsys, phantom)
    assert status == 2 and "nothing to export" in err
    status, _, err = run(capsys, phantom, "-o", tmp_path / "missing" / "x.nii.gz")
    assert status == 2 and "does not exist" in err


def test_output_folder_gets_the_default_name_and_own_labels_are_converted(capsys, phantom: Path,
                                                                          tmp_path: Path) -> None:
    status, printed, _ = run(capsys, phantom, "-o", tmp_path, "--labels", "brats23")
    assert status == 0 and "no --ai-mask given" in printed
    out = tmp_path / "ph_seg_corrected_brats23.nii.gz"
    truth = np.asarray(nib.load(phantom / "ph_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), convert(truth, BRATS, LabelConvention.BRATS23))


def test_nothing_is_written_when_one_target_is_impossible(capsys, phantom: Path, tmp_path: Path) -> None:
    status, _, err = run(capsys, phantom, "-o", tmp_path / "a.nii.gz", "--dicom-seg", tmp_path / "a.dcm")
    assert status == 2 and "not read from a DICOM series" in err
    status, _, err = run(capsys, phantom, "-o", tmp_path / "b.nii.gz", "--png", tmp_path / "b.json")
    assert status == 2 and "same file" in err  # b.json is the NIfTI's sidecar
    assert not list(tmp_path.glob("a.*")) and not list(tmp_path.glob("b.*"))


def test_export_from_the_journal_of_an_interrupted_session(capsys, phantom: Path, tmp_path: Path) -> None:
    study = load_study(phantom)
    session = EditSession(study.labels, study.grid)
    journal = Journal.create(journal_path(study), session, {"model_version": "gui-7", "base": "model gui-7"})
    session.recorder = journal
    session.paint_sphere((10, 10, 5), 4.0, 1)
    session.begin_stroke("brush")
    session.paint_disc(2, (30, 30, 20), 3.0, 4)
    journal.checkpoint(session)
    journal.close()  # the app died here, the mouse still held
    out = tmp_path / "recovered.nii.gz"
    status, _, err = run(capsys, phantom, "--from-journal", "-o", out)
    assert status == 0, err
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), session.labels)
    sidecar = json.loads((tmp_path / "recovered.json").read_text())
    assert sidecar["model_version"] == "gui-7" and sidecar["edited"] is True
    assert sidecar["voxels_changed"] == int((session.labels != study.labels).sum()) > 0
    contents = read_journal(journal_path(study))
    assert contents.saved[-1]["path"] == str(out) and not contents.unsaved  # the GUI will say where it went
    journal_path(study).unlink()
    status, _, err = run(capsys, phantom, "--from-journal", "-o", tmp_path / "again.nii.gz")
    assert status == 2 and "no unsaved edits" in err


def test_meshes_png_and_report(capsys, phantom: Path, tmp_path: Path) -> None:
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOGeometry import vtkSTLReader

    _, corrected, ai_path, mask_path = masks(phantom, tmp_path)
    meshes, png, report = tmp_path / "meshes", tmp_path / "views.png", tmp_path / "report.html"
    status, _, err = run(capsys, phantom, "--mask", mask_path, "--ai-mask", ai_path, "--meshes", meshes,
                         "--mesh-space", "lps", "--png", png, "--report", report)
    assert status == 0, err
    assert sorted(p.name for p in meshes.iterdir()) == ["ph_ET.stl", "ph_TC.stl", "ph_WT.stl"]
    reader = vtkSTLReader()
    reader.SetFileName(str(meshes / "ph_WT.stl"))
    reader.Update()
    points = vtk_to_numpy(reader.GetOutput().GetPoints().GetData())
    grid = load_study(phantom).grid
    voxels = np.argwhere(corrected > 0)
    world = (grid.affine @ np.c_[voxels, np.ones(len(voxels))].T).T[:, :3] * [-1, -1, 1]  # LPS
    np.testing.assert_allclose(points.mean(axis=0), world.mean(axis=0), atol=1.5)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = report.read_text(encoding="utf-8")
    assert "m-42" in text and "data:image/png;base64," in text and RESEARCH_USE_NOTE in text
    assert "Dice AI vs corrected" in text


def test_dicom_seg_reads_back_voxel_for_voxel_with_its_sidecar(capsys, tmp_path: Path) -> None:
    from brainseg_gui.core.dicom_seg import read_dicom_seg
    from tests.core.test_dicom_seg import write_series

    folder = write_series(tmp_path / "series")
    study = load_study(folder)
    mask = np.zeros(study.grid.shape, np.uint8)
    mask[3:8, 3:8, 1:4] = 2
    mask[4:6, 4:6, 2] = 4
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, study.grid.affine), mask_path)
    seg = tmp_path / "out.dcm"
    status, _, err = run(capsys, folder, "--mask", mask_path, "--dicom-seg", seg, "--model-version", "v9")
    assert status == 0, err
    np.testing.assert_array_equal(read_dicom_seg(seg, study), mask)
    sidecar = json.loads((tmp_path / "out.dcm.json").read_text())
    assert sidecar["model_version"] == "v9" and sidecar["dicom_seg_segments"] == {"NCR": 1, "ED": 2, "ET": 3}
    # a DICOM series folder is an input: nothing is written into it
    status, _, err = run(capsys, folder, "--mask", mask_path, "-o", folder / "x.nii.gz")
    assert status == 2 and "input" in err


@pytest.mark.slow
def test_a_real_case_round_trips_on_its_exact_grid(capsys, real_case: Path, tmp_path: Path) -> None:
    study = load_study(real_case)
    truth = convert(study.labels, study.label_convention, BRATS)
    corrected = truth.copy()
    corrected[100:110, 100:110, 70] = 1
    mask_path = tmp_path / "corrected.nii.gz"
    nib.save(nib.Nifti1Image(corrected, study.grid.affine), mask_path)
    seg = next(p for p in real_case.iterdir() if p.name.endswith("_seg.nii.gz"))
    out = tmp_path / "out.nii.gz"
    status, _, err = run(capsys, real_case, "--mask", mask_path, "--ai-mask", seg, "-o", out, "--labels", "msd")
    assert status == 0, err
    image, source = nib.load(out), nib.load(seg)
    assert np.array_equal(image.affine, source.affine) and image.shape == source.shape
    assert np.array_equal(image.header.get_qform(), source.header.get_qform())
    np.testing.assert_array_equal(convert(np.asarray(image.dataobj), MSD, BRATS), corrected)
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["voxels_changed"] == int((corrected != truth).sum()) > 0
    assert len(sidecar["source_sha256"]["t1"]) == 64


def test_report_lists_a_saved_measurement_file_and_refuses_a_bad_one(capsys, phantom: Path, tmp_path: Path) -> None:
    from brainseg_gui.core.measurements import MeasurementSet, Ruler
    from brainseg_gui.core.orientation import Reorientation

    _, _, ai_path, mask_path = masks(phantom, tmp_path)
    study = load_study(phantom)
    reorient = Reorientation(study.grid)
    ruler = Ruler((10.0, 20.0, 12.0), (30.0, 20.0, 12.0))
    length = ruler.length_mm(reorient.affine)
    saved = tmp_path / "measurements.json"
    saved.write_text(MeasurementSet(reorient.shape, tuple(map(tuple, reorient.affine)), rulers=(ruler,)).to_json())
    report = tmp_path / "report.html"
    status, _, err = run(capsys, phantom, "--mask", mask_path, "--ai-mask", ai_path, "--report", report,
                         "--measurements", saved)
    assert status == 0, err
    text = report.read_text(encoding="utf-8")
    assert f"<tr><td>Ruler 1</td><td>axial</td><td>13</td><td>{length:.1f}</td></tr>" in text
    assert "Against the ground truth" in text and text.count('<img class="slice"') == 3
    assert f"<code>{phantom.absolute()}" in text
    # a damaged file, another study's, or one without a report: one line, exit 2, nothing written
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": "brainseg-measurements", "version": 1, "grid": {}}')
    other = tmp_path / "other.json"
    other.write_text(MeasurementSet((4, 4, 4), tuple(map(tuple, np.eye(4))), rulers=(ruler,)).to_json())
    out, again = tmp_path / "out.nii.gz", tmp_path / "again.html"
    for bad, says in ((damaged, "damaged"), (other, "4x4x4"), (tmp_path / "missing.json", "missing.json")):
        status, _, err = run(capsys, phantom, "--mask", mask_path, "-o", out, "--report", again, "--measurements", bad)
        assert status == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not again.exists()
    status, _, err = run(capsys, phantom, "--mask", mask_path, "-o", out, "--measurements", saved)
    assert status == 2 and "--report" in err and not out.exists()
