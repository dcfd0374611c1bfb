"""`app.exports.export_all` without a window: meshes in world coordinates (RAS and LPS), every
target checked before anything is written, the report's measurements; and File > Export report in
the window. The CLI's side is in tests/test_cli_export.py."""

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
    export_all(study, study.labels, prov, ExportRequest(meshes=folder, mesh_space=space, mesh_format="stl"))
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
                            report=out / "report.html", overwrite=True)
    export_all(study, study.labels, prov, request)  # the earlier export, to be replaced
    edited = study.labels.copy()
    edited[edited == 4] = 1
    assert assert_all_or_nothing(lambda: export_all(study, edited, prov, request), out, point, monkeypatch) > 0
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["toy_TC.stl", "toy_WT.stl"]  # no ET any more
    assert len(list(out.iterdir())) == 5  # mask, sidecar, PNG, report, meshes


def test_the_report_lists_the_measurements_and_refuses_another_studys(toy_case, tmp_path) -> None:
    from brainseg_gui.core.measurements import MeasurementError, MeasurementSet, Ruler
    from brainseg_gui.core.orientation import Reorientation

    study = load_study(toy_case)
    reorient = Reorientation(study.grid)
    prov = provenance(study, study.labels, None, model_version="v1")
    ruler = Ruler((10, 20, 12), (30, 20, 12))
    measurements = MeasurementSet(reorient.shape, tuple(map(tuple, reorient.affine)), rulers=(ruler,))
    report = tmp_path / "report.html"
    export_all(study, study.labels, prov, ExportRequest(report=report, measurements=measurements,
                                                        model_device="CUDA (test)", sequence="flair"))
    text = report.read_text(encoding="utf-8")
    assert "<tr><td>Ruler 1</td><td>axial</td><td>13</td><td>30.0</td></tr>" in text
    assert "v1, run on CUDA (test)" in text and "<p>FLAIR with the exported mask" in text
    assert text.count('<img class="slice"') == 3 and "Against the ground truth" in text
    # measurements of another grid: refused before anything is written
    other = MeasurementSet((4, 4, 4), tuple(map(tuple, np.eye(4))), rulers=(ruler,))
    mask = tmp_path / "mask.nii.gz"
    with pytest.raises(MeasurementError, match="4x4x4"):
        export_all(study, study.labels, prov, ExportRequest(nifti=mask, report=tmp_path / "other.html",
                                                            measurements=other))
    assert not mask.exists() and not (tmp_path / "other.html").exists()


def test_file_export_report_holds_the_open_studys_measurements_not_a_screenshot(qtbot, settings, monkeypatch,
                                                                               toy_case, tmp_path) -> None:
    import base64
    import re

    from tests.ui.editing_support import TIMEOUT_MS, make_window, open_and_segment

    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case)
    measurements = window.context.document.measurements
    measurements.add_ruler((10.0, 20.0, 12.0), (10.0, 40.0, 12.0))
    measured = measurements.measure_rano(window.grid.prediction)
    assert measured is not None
    report = tmp_path / "report.html"
    job = window.exporter.export_report(report)
    qtbot.waitUntil(lambda: job.done, timeout=TIMEOUT_MS)
    text = report.read_text(encoding="utf-8")
    assert "<tr><td>Ruler 1</td><td>axial</td><td>13</td><td>30.0</td></tr>" in text  # 20 x 1.5 mm
    assert (f"<tr><td>{measured.slice_z + 1}</td><td>{measured.long_mm:.1f}</td><td>{measured.short_mm:.1f}</td>"
            f"<td>{measured.product_mm2:.0f}</td>") in text
    assert "fake-1, run on CPU" in text and "Against the ground truth" in text and "HD95" in text
    pictures = re.findall(r'<img class="slice"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(pictures) == 3
    window_size = (window.width(), window.height())
    for data in pictures:  # drawn from the data (the toy grid), never a grab of the window
        png = base64.b64decode(data)
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert max(width, height) < 60 and (width, height) != window_size
