"""Mask -> mesh without VTK or a window: closed surfaces of the right volume in the right place,
as close to VTK's flying edges + windowed sinc as the eye can tell, written as STL/OBJ that VTK reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainseg_gui.app.mesh_export import obj_text, stl_bytes, write_mesh
from brainseg_gui.app.meshing import Mesh, mask_mesh, region_meshes
from brainseg_gui.core.errors import BrainSegError, Cancelled
from brainseg_gui.core.progress import CancelToken


def ball(shape, centre, radius_mm, spacing) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius_mm ** 2


def boundary_edges(mesh: Mesh) -> int:
    """Edges used by one triangle only (0 for a closed surface)."""
    edges = np.sort(np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum())


def test_ball_mesh_is_closed_outward_with_the_right_volume_and_place() -> None:
    spacing = (1.0, 1.5, 3.0)
    mask = ball((40, 40, 30), (20, 30, 45), 12, spacing)
    mesh = mask_mesh(mask, spacing)
    assert len(mesh.vertices) > 100 and boundary_edges(mesh) == 0
    mask_mm3 = mask.sum() * np.prod(spacing)
    assert mesh.volume_mm3() == pytest.approx(mask_mm3, rel=0.08)  # positive: the normals face out
    low, high = mesh.bounds()
    np.testing.assert_allclose((low + high) / 2, (20, 30, 45), atol=2.0)
    assert high[0] - low[0] == pytest.approx(24, abs=3)
    outward = mesh.vertices - mesh.vertices.mean(axis=0)
    assert (np.einsum("ij,ij->i", outward, mesh.normals) > 0).mean() > 0.99


def test_empty_mask_and_region_meshes() -> None:
    assert mask_mesh(np.zeros((5, 5, 5), bool), (1, 1, 1)).is_empty
    regions = np.zeros((3, 30, 30, 30), dtype=bool)
    regions[0] = ball((30, 30, 30), (15, 15, 15), 10, (1, 1, 1))
    regions[1] = ball((30, 30, 30), (15, 15, 15), 6, (1, 1, 1))
    brain = ball((30, 30, 30), (15, 15, 15), 14, (1, 1, 1))
    reports = []
    meshes = region_meshes(regions, (1.0, 1.0, 1.0), brain, progress=lambda f, m: reports.append(f))
    assert set(meshes) == {"WT", "TC", "ET", "brain"}
    assert meshes["ET"].is_empty
    assert meshes["WT"].volume_mm3() > meshes["TC"].volume_mm3() > 0
    assert reports[-1] == 1.0
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        region_meshes(regions, (1.0, 1.0, 1.0), cancel=token)


def test_a_mirroring_transform_keeps_the_surface_facing_out() -> None:
    mesh = mask_mesh(ball((20, 20, 20), (10, 10, 10), 6, (1, 1, 1)), (1.0, 1.0, 1.0))
    lps = mesh.transformed(np.diag([-1.0, -1.0, 1.0, 1.0]))  # RAS -> LPS: a rotation, no mirror
    mirrored = mesh.transformed(np.diag([-1.0, 1.0, 1.0, 1.0]))
    for moved in (lps, mirrored):
        assert moved.volume_mm3() == pytest.approx(mesh.volume_mm3())


def test_the_surfaces_match_vtks_on_a_real_case() -> None:
    """The meshes VTK made before (flying edges + windowed sinc): same triangles, same volume,
    surfaces within half a millimetre."""
    vtk = pytest.importorskip("vtkmodules.vtkFiltersGeneral")
    import glob

    import nibabel as nib
    from scipy.spatial import cKDTree
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkWindowedSincPolyDataFilter

    case = Path(__file__).resolve().parents[3] / "shared" / "data" / "brats2021" / "BraTS2021_00003"
    files = glob.glob(str(case / "*seg*"))
    if not files:
        pytest.skip(f"no real case at {case} (../shared/data is not part of the repository)")
    seg = nib.load(files[0])
    et = np.asarray(seg.dataobj) == 4
    spacing = tuple(float(s) for s in seg.header.get_zooms()[:3])
    ours = mask_mesh(et, spacing)
    image = vtkImageData()
    crop = np.pad(et, 1).astype(np.uint8)
    image.SetDimensions(*crop.shape)
    image.SetSpacing(*spacing)
    image.SetOrigin(*(-s for s in spacing))
    image.GetPointData().SetScalars(numpy_to_vtk(crop.ravel(order="F"), deep=True))
    surface = vtk.vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    smoother = vtkWindowedSincPolyDataFilter()
    smoother.SetInputConnection(surface.GetOutputPort())
    smoother.SetNumberOfIterations(20)
    smoother.SetPassBand(0.05)
    smoother.NonManifoldSmoothingOn()
    smoother.NormalizeCoordinatesOn()
    smoother.Update()
    theirs = vtk_to_numpy(smoother.GetOutput().GetPoints().GetData())
    assert abs(len(ours.faces) - smoother.GetOutput().GetNumberOfCells()) <= 0.01 * len(ours.faces)
    assert ours.volume_mm3() == pytest.approx(et.sum() * np.prod(spacing), rel=0.02)
    distances = np.r_[cKDTree(ours.vertices).query(theirs)[0], cKDTree(theirs).query(ours.vertices)[0]]
    assert distances.mean() < 0.5 and np.percentile(distances, 95) < 1.0


def test_stl_and_obj_files_are_read_back_by_vtk(tmp_path: Path) -> None:
    from vtkmodules.vtkFiltersCore import vtkMassProperties
    from vtkmodules.vtkIOGeometry import vtkOBJReader, vtkSTLReader

    mesh = mask_mesh(ball((30, 30, 30), (15, 15, 15), 9, (1, 1, 1)), (1.0, 1.0, 1.0))
    for suffix, reader in ((".stl", vtkSTLReader()), (".obj", vtkOBJReader())):
        path = write_mesh(tmp_path / f"ball{suffix}", mesh)
        reader.SetFileName(str(path))
        reader.Update()
        output = reader.GetOutput()
        assert output.GetNumberOfCells() == len(mesh.faces)
        mass = vtkMassProperties()
        mass.SetInputData(output)
        mass.Update()
        assert mass.GetVolume() == pytest.approx(mesh.volume_mm3(), rel=1e-3)
    assert len(stl_bytes(mesh)) == 84 + 50 * len(mesh.faces)
    assert obj_text(mesh).count("\nf ") == len(mesh.faces)
    with pytest.raises(BrainSegError, match=".stl or .obj"):
        write_mesh(tmp_path / "ball.ply", mesh)
