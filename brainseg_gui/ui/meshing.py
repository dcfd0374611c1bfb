"""Masks -> smoothed surface meshes for the 3D view (VTK, no window needed; runs in a worker).

Coordinates are millimetres in the RAS voxel frame of `DisplayVolume` (voxel centre (x, y, z)
at (x*sx, y*sy, z*sz)), so the slice views and the 3D view agree without any further transform.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress

#: Windowed-sinc smoothing: enough to hide the voxel steps, little enough to keep small ET islands.
SMOOTHING_ITERATIONS = 20
SMOOTHING_PASS_BAND = 0.05
#: The brain surface is only context: built at half resolution and smoothed more.
BRAIN_STEP = 2


def mask_mesh(mask: np.ndarray, spacing: tuple[float, float, float], *,
              iterations: int = SMOOTHING_ITERATIONS, step: int = 1) -> vtkPolyData:
    """Closed, smoothed surface of a 3D boolean mask; empty polydata for an empty mask.

    mask: (x, y, z) bool in RAS voxel order. spacing: mm per voxel along x, y, z. `step` > 1
    subsamples the mask first (for large context surfaces).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return vtkPolyData()
    lows, highs = [], []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lows.append(int(hits[0]))
        highs.append(int(hits[-1]) + 1)
    crop = mask[lows[0]:highs[0]:step, lows[1]:highs[1]:step, lows[2]:highs[2]:step]
    padded = np.pad(crop, 1).astype(np.uint8)  # a border of background closes the surface
    image = vtkImageData()
    image.SetDimensions(*padded.shape)
    image.SetSpacing(*(s * step for s in spacing))
    image.SetOrigin(*((low - step) * s for low, s in zip(lows, spacing)))
    scalars = numpy_to_vtk(padded.ravel(order="F"), deep=True)  # VTK: x varies fastest
    image.GetPointData().SetScalars(scalars)

    surface = vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    surface.ComputeNormalsOff()
    surface.ComputeGradientsOff()
    surface.ComputeScalarsOff()
    last = surface
    if iterations > 0:
        smoother = vtkWindowedSincPolyDataFilter()
        smoother.SetInputConnection(surface.GetOutputPort())
        smoother.SetNumberOfIterations(iterations)
        smoother.SetPassBand(SMOOTHING_PASS_BAND)
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        last = smoother
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(last.GetOutputPort())
    normals.ConsistencyOn()
    normals.SplittingOff()
    normals.Update()
    out = vtkPolyData()
    out.DeepCopy(normals.GetOutput())
    return out


def region_meshes(regions: np.ndarray, spacing: tuple[float, float, float], brain: np.ndarray | None = None,
                  *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None
                  ) -> Mapping[str, vtkPolyData]:
    """Surfaces of WT, TC, ET ((3, x, y, z) bool, RAS) and, if given, of the brain mask.

    The work the 3D view hands to a worker: about a second for a full 240x240x155 case.
    """
    cancel = cancel or CancelToken()
    meshes: dict[str, vtkPolyData] = {}
    names = list(REGIONS) + (["brain"] if brain is not None else [])
    for index, name in enumerate(names):
        cancel.raise_if_cancelled()
        progress(index / len(names), f"Building the {name} surface")
        if name == "brain":
            meshes[name] = mask_mesh(brain, spacing, iterations=10, step=BRAIN_STEP)
        else:
            meshes[name] = mask_mesh(regions[index], spacing)
    progress(1.0, "Surfaces ready")
    return meshes
