"""Mask -> mesh without any window: closed surfaces of the right volume in the right place."""

from __future__ import annotations

import numpy as np
import pytest
from vtkmodules.vtkFiltersCore import vtkFeatureEdges, vtkMassProperties

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.ui.meshing import mask_mesh, region_meshes


def ball(shape, centre, radius_mm, spacing) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius_mm ** 2


def volume_ml(mesh) -> float:
    mass = vtkMassProperties()
    mass.SetInputData(mesh)
    mass.Update()
    return mass.GetVolume() / 1000.0


def test_ball_mesh_is_closed_with_the_right_volume_and_place() -> None:
    spacing = (1.0, 1.5, 3.0)
    mask = ball((40, 40, 30), (20, 30, 45), 12, spacing)
    mesh = mask_mesh(mask, spacing)
    assert mesh.GetNumberOfPoints() > 100
    edges = vtkFeatureEdges()
    edges.SetInputData(mesh)
    edges.BoundaryEdgesOn()
    edges.FeatureEdgesOff()
    edges.NonManifoldEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    assert edges.GetOutput().GetNumberOfCells() == 0  # closed
    mask_ml = mask.sum() * np.prod(spacing) / 1000
    assert volume_ml(mesh) == pytest.approx(mask_ml, rel=0.08)
    x0, x1, y0, y1, z0, z1 = mesh.GetBounds()
    np.testing.assert_allclose([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2], (20, 30, 45), atol=2.0)
    assert x1 - x0 == pytest.approx(24, abs=3)


def test_empty_mask_and_region_meshes() -> None:
    assert mask_mesh(np.zeros((5, 5, 5), bool), (1, 1, 1)).GetNumberOfPoints() == 0
    regions = np.zeros((3, 30, 30, 30), dtype=bool)
    regions[0] = ball((30, 30, 30), (15, 15, 15), 10, (1, 1, 1))
    regions[1] = ball((30, 30, 30), (15, 15, 15), 6, (1, 1, 1))
    brain = ball((30, 30, 30), (15, 15, 15), 14, (1, 1, 1))
    reports = []
    meshes = region_meshes(regions, (1.0, 1.0, 1.0), brain, progress=lambda f, m: reports.append(f))
    assert set(meshes) == {"WT", "TC", "ET", "brain"}
    assert meshes["ET"].GetNumberOfPoints() == 0
    assert volume_ml(meshes["WT"]) > volume_ml(meshes["TC"]) > 0
    assert reports[-1] == 1.0
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        region_meshes(regions, (1.0, 1.0, 1.0), cancel=token)
