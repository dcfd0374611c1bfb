"""Surface meshes of the tumour regions as STL or OBJ files (VTK; no window, no Qt).

Meshes come from `meshing.mask_mesh` (the 3D view's surfaces) and are moved from its RAS voxel
frame to world millimetres: RAS (scanner) coordinates by default, or LPS (what 3D Slicer and most
DICOM tools assume for STL/OBJ). Each file is written to a temporary name and renamed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkFiltersGeneral import vtkTransformFilter
from vtkmodules.vtkIOGeometry import vtkOBJWriter, vtkSTLWriter

from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.study import Grid
from brainseg_gui.ui.meshing import mask_mesh

FORMATS = ("stl", "obj")
SPACES = ("ras", "lps")


def world_matrix(grid: Grid, space: str = "ras") -> np.ndarray:
    """4x4 from `mask_mesh`'s frame (RAS voxel index * spacing) to world mm in `space`."""
    reorient = Reorientation(grid)
    from nibabel import orientations as ornt

    transform = ornt.ornt_transform(ornt.io_orientation(grid.affine), ornt.axcodes2ornt("RAS"))
    to_file = ornt.inv_ornt_aff(transform, grid.shape)
    ras_voxel_to_world = grid.affine @ to_file
    unscale = np.diag([*(1.0 / s for s in reorient.spacing), 1.0])
    matrix = ras_voxel_to_world @ unscale
    if space == "lps":
        matrix = np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix
    elif space != "ras":
        raise BrainSegError(f"unknown mesh coordinate space {space!r}; use one of {SPACES}")
    return matrix


def transformed(mesh: vtkPolyData, matrix: np.ndarray) -> vtkPolyData:
    """The mesh with its points mapped by a 4x4 matrix (normals recomputed, outward)."""
    transform = vtkTransform()
    transform.SetMatrix(matrix.ravel().tolist())
    moved = vtkTransformFilter()
    moved.SetInputData(mesh)
    moved.SetTransform(transform)
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(moved.GetOutputPort())
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.SplittingOff()
    normals.Update()
    out = vtkPolyData()
    out.DeepCopy(normals.GetOutput())
    return out


def write_mesh(path: Path, mesh: vtkPolyData, *, files: FileSet | None = None) -> Path:
    """Write one mesh as STL (binary) or OBJ, chosen by the file's suffix, all-or-nothing (or into `files`)."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise BrainSegError(f"cannot write {path}: meshes are written as .stl or .obj")

    def save(temporary: Path) -> None:
        writer = vtkSTLWriter() if kind == "stl" else vtkOBJWriter()
        writer.SetFileName(str(temporary))
        if kind == "stl":
            writer.SetFileTypeToBinary()
        writer.SetInputData(mesh)
        if writer.Write() != 1:
            raise OSError(f"VTK could not write {path}")

    return write_into(files, path, save)


def export_meshes(folder: Path, labels: np.ndarray, grid: Grid, *, prefix: str, fmt: str = "stl",
                  space: str = "ras", overwrite: bool = False, progress: ProgressFn = no_progress,
                  cancel: CancelToken | None = None, files: FileSet | None = None) -> list[Path]:
    """One mesh file per non-empty region (WT, TC, ET) of `labels` (BraTS values, the grid's order).

    Files are named '<prefix>_<region>.<fmt>' in `folder`; existing ones raise unless `overwrite`.
    Within a set (`files`), an earlier mesh of a region that is now empty is removed with the commit,
    so the folder never shows a surface the mask no longer has.
    """
    folder = Path(folder)
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise BrainSegError(f"unknown mesh format {fmt!r}; use one of {FORMATS}")
    if not folder.is_dir():
        raise BrainSegError(f"cannot write meshes to {folder}: not a folder")
    targets = {region: folder / f"{prefix}_{region}.{fmt}" for region in REGIONS}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        from brainseg_gui.core.export import ExportExistsError

        raise ExportExistsError(f"{', '.join(existing)} exist already; allow overwriting (--force)")
    cancel = cancel or CancelToken()
    reorient = Reorientation(grid)
    regions = reorient.apply(to_regions(labels, LabelConvention.BRATS))
    matrix = world_matrix(grid, space)
    written = []
    for index, region in enumerate(REGIONS):
        cancel.raise_if_cancelled()
        progress(index / len(REGIONS), f"Building the {region} surface")
        if not regions[index].any():
            if files is not None:
                files.remove(targets[region])  # an earlier export's mesh of a region now empty
            continue
        mesh = transformed(mask_mesh(regions[index], reorient.spacing), matrix)
        written.append(write_mesh(targets[region], mesh, files=files))
    progress(1.0, f"{len(written)} meshes written")
    return written
