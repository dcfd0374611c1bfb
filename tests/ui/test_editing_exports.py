"""`brainseg export` (add_export_arguments / run_export) without a window: NIfTI in a convention,
--force, --from-journal, DICOM-SEG for a DICOM study, meshes in world coordinates, the report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from vtkmodules.vtkIOGeometry import vtkOBJReader, vtkSTLReader

from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.export import ExportExistsError
from brainseg_gui.core.io import load_study
from brainseg_gui.core.journal import Journal, journal_path
from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.ui.exports import add_export_arguments, run_export


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="brainseg export")
    add_export_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_export_a_mask_in_another_convention_with_provenance(toy_case, tmp_path, capsys) -> None:
    study = load_study(toy_case)
    ai = study.labels.copy()
    corrected = ai.copy()
    corrected[2:5, 2:5, 2:5] = 4
    ai_path, mask_path = tmp_path / "ai.nii.gz", tmp_path / "corrected.nii.gz"
    for path, labels in ((ai_path, ai), (mask_path, corrected)):
        nib.save(nib.Nifti1Image(labels, study.grid.affine), path)
    (tmp_path / "ai.json").write_text(json.dumps({"model_version": "m-42"}))
    out = tmp_path / "out.nii.gz"
    assert run_export(parse(toy_case, "--mask", mask_path, "--ai-mask", ai_path, "-o", out, "--labels", "msd")) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "27 voxels changed" in printed and "m-42" in printed
    image = nib.load(out)
    np.testing.assert_array_equal(np.asarray(image.dataobj), convert(corrected, LabelConvention.BRATS,
                                                                    LabelConvention.MSD))
    assert np.array_equal(image.affine, nib.load(toy_case / "toy_seg.nii.gz").affine)
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["model_version"] == "m-42" and sidecar["voxels_changed"] == 27
    assert sidecar["voxels_changed_per_class"]["ET"]["added"] == 27
    with pytest.raises(ExportExistsError):
        run_export(parse(toy_case, "--mask", mask_path, "-o", out))
    assert run_export(parse(toy_case, "--mask", mask_path, "-o", out, "--force")) == 0
    with pytest.raises(BrainSegError, match="input"):
        run_export(parse(toy_case, "-o", toy_case / "toy_seg.nii.gz", "--force"))
    with pytest.raises(BrainSegError, match="nothing to export"):
        run_export(parse(toy_case))


def test_export_from_the_journal_of_an_interrupted_session(toy_case, tmp_path, private_state, capsys) -> None:
    study = load_study(toy_case)
    session = EditSession(study.labels, study.grid)
    journal = Journal.create(journal_path(study), session, {"model_version": "gui-7", "base": "model gui-7"})
    session.recorder = journal
    session.paint_sphere((10, 10, 5), 4.0, 1)
    journal.close()  # the app died here
    out = tmp_path / "recovered.nii.gz"
    assert run_export(parse(toy_case, "--from-journal", "-o", out)) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), session.labels)
    sidecar = json.loads((tmp_path / "recovered.json").read_text())
    assert sidecar["model_version"] == "gui-7" and sidecar["edited"] is True
    journal_path(study).unlink()
    with pytest.raises(BrainSegError, match="no unsaved edits"):
        run_export(parse(toy_case, "--from-journal", "-o", tmp_path / "again.nii.gz"))


def mesh_points(path: Path) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    reader = vtkSTLReader() if path.suffix == ".stl" else vtkOBJReader()
    reader.SetFileName(str(path))
    reader.Update()
    return vtk_to_numpy(reader.GetOutput().GetPoints().GetData())


@pytest.mark.parametrize("space", ["ras", "lps"])
def test_meshes_lie_where_the_regions_are_in_world_space(toy_case, tmp_path, space) -> None:
    study = load_study(toy_case)
    folder = tmp_path / "meshes"
    folder.mkdir()
    run_export(parse(toy_case, "--meshes", folder, "--mesh-space", space, "--mesh-format", "stl"))
    assert sorted(p.name for p in folder.iterdir()) == ["toy_ET.stl", "toy_TC.stl", "toy_WT.stl"]
    points = mesh_points(folder / "toy_WT.stl")
    voxels = np.argwhere(study.labels > 0)
    world = (study.grid.affine @ np.c_[voxels, np.ones(len(voxels))].T).T[:, :3]
    if space == "lps":
        world[:, :2] *= -1
    # the surface's centre is the region's centre; it reaches about half a voxel past the outer centres
    np.testing.assert_allclose(points.mean(axis=0), world.mean(axis=0), atol=1.0)
    reach = max(study.grid.spacing)
    assert np.all(points.max(axis=0) <= world.max(axis=0) + reach)
    assert np.all(points.min(axis=0) >= world.min(axis=0) - reach)


def test_dicom_seg_and_report_from_the_cli(tmp_path) -> None:
    from brainseg_gui.core.dicom_seg import read_dicom_seg
    from tests.core.test_dicom_seg import write_series

    folder = write_series(tmp_path / "series")
    study = load_study(folder)
    mask = np.zeros(study.grid.shape, np.uint8)
    mask[3:8, 3:8, 1:4] = 2
    mask[4:6, 4:6, 2] = 4
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, study.grid.affine), mask_path)
    seg, report = tmp_path / "out.dcm", tmp_path / "report.html"
    assert run_export(parse(folder, "--mask", mask_path, "--dicom-seg", seg, "--report", report,
                            "--model-version", "v9")) == 0
    np.testing.assert_array_equal(read_dicom_seg(seg, study), mask)
    text = report.read_text(encoding="utf-8")
    assert "v9" in text and "data:image/png;base64," in text
