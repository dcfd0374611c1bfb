"""`ui.exports.export_all` without a window: meshes in world coordinates (RAS and LPS), and every
target checked before anything is written. The CLI's side is in tests/test_cli_export.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fault_injection import FAULT_POINTS, assert_all_or_nothing
from vtkmodules.vtkIOGeometry import vtkOBJReader, vtkSTLReader

from brainseg_gui.app.exports import ExportRequest, export_all
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.export import ExportExistsError, provenance
from brainseg_gui.core.io import load_study
from brainseg_gui.ui.mesh_export import export_meshes


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
    prov = provenance(study, study.labels, None, model_version=None)
    export_all(study, study.labels, prov, ExportRequest(meshes=folder, mesh_space=space, mesh_format="stl",
                                                        mesh_writer=export_meshes))
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


def test_every_target_is_checked_before_anything_is_written(toy_case, tmp_path) -> None:
    study = load_study(toy_case)
    prov = provenance(study, study.labels, None, model_version="v1")
    report = tmp_path / "report.html"
    report.write_text("earlier")
    request = ExportRequest(nifti=tmp_path / "mask.nii.gz", png=tmp_path / "views.png", report=report)
    with pytest.raises(ExportExistsError, match="report.html"):
        export_all(study, study.labels, prov, request)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["report.html"]
    mask = tmp_path / "mask.nii.gz"
    with pytest.raises(BrainSegError, match="input"):
        export_all(study, study.labels, prov, ExportRequest(nifti=tmp_path / "new.nii.gz", png=tmp_path / "x.png",
                                                            protect=(tmp_path / "x.png",)))
    assert not mask.exists() and not (tmp_path / "new.nii.gz").exists()
    written = export_all(study, study.labels, prov, ExportRequest(nifti=mask, png=tmp_path / "views.png"))
    assert [p.name for p in written] == ["mask.nii.gz", "mask.json", "views.png"]


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_an_export_set_is_written_whole_or_not_at_all(toy_case, tmp_path, point, monkeypatch) -> None:
    """NIfTI + sidecar, meshes, PNG and report replace an earlier export together, whatever call fails."""
    study = load_study(toy_case)
    out = tmp_path / "export"
    (out / "meshes").mkdir(parents=True)
    prov = provenance(study, study.labels, None, model_version="v1")
    request = ExportRequest(nifti=out / "mask.nii.gz", meshes=out / "meshes", png=out / "views.png",
                            report=out / "report.html", overwrite=True, mesh_writer=export_meshes)
    export_all(study, study.labels, prov, request)  # the earlier export, to be replaced
    edited = study.labels.copy()
    edited[edited == 4] = 1
    assert assert_all_or_nothing(lambda: export_all(study, edited, prov, request), out, point, monkeypatch) > 0
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["toy_TC.stl", "toy_WT.stl"]  # no ET any more
    assert len(list(out.iterdir())) == 5  # mask, sidecar, PNG, report, meshes
