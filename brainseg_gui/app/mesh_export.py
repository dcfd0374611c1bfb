"""Surface meshes of the tumour regions as STL or OBJ files (numpy only; no VTK, no window, no Qt).

Meshes come from `meshing.mask_mesh` (the 3D view's surfaces) and are moved from its RAS voxel
frame to world millimetres: RAS (scanner) coordinates by default, or LPS (what 3D Slicer and most
DICOM tools assume for STL/OBJ). Both formats are a few lines of numpy (binary STL is a fixed
record per triangle), so the CLI writes them without VTK. Files are written all-or-nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainseg_gui.app.meshing import Mesh, mask_mesh
from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.study import Grid

FORMATS = ("stl", "obj")
SPACES = ("ras", "lps")
#: One binary STL record: normal, three vertices, an unused attribute word.
STL_RECORD = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def world_matrix(grid: Grid, space: str = "ras") -> np.ndarray:
    """4x4 from `mask_mesh`'s frame (RAS voxel index * spacing) to world mm in `space`."""
    reorient = Reorientation(grid)
    unscale = np.diag([*(1.0 / s for s in reorient.spacing), 1.0])
    matrix = reorient.affine @ unscale
    if space == "lps":
        matrix = np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix
    elif space != "ras":
        raise BrainSegError(f"unknown mesh coordinate space {space!r}; use one of {SPACES}")
    return matrix


def stl_bytes(mesh: Mesh, name: str = "brainseg") -> bytes:
    """Binary STL: an 80-byte header, the triangle count, one record per triangle (outward normals)."""
    triangles = mesh.vertices[mesh.faces].astype(np.float32)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    records = np.zeros(len(triangles), dtype=STL_RECORD)
    records["normal"] = normals / np.where(length > 0, length, 1.0)
    records["vertices"] = triangles
    header = f"BrainSeg surface {name}".encode("ascii", "replace")[:80].ljust(80, b" ")
    return header + np.uint32(len(triangles)).tobytes() + records.tobytes()


def obj_text(mesh: Mesh, name: str = "brainseg") -> str:
    """Wavefront OBJ: vertices, vertex normals and 1-based faces that reference both."""
    lines = [f"# BrainSeg surface {name}", f"o {name}"]
    lines += [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in mesh.vertices]
    lines += [f"vn {x:.4f} {y:.4f} {z:.4f}" for x, y, z in mesh.normals]
    lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in (mesh.faces + 1)]
    return "\n".join(lines) + "\n"


def write_mesh(path: Path, mesh: Mesh, *, files: FileSet | None = None) -> Path:
    """Write one mesh as STL (binary) or OBJ, chosen by the file's suffix, all-or-nothing (or into `files`)."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise BrainSegError(f"cannot write {path}: meshes are written as .stl or .obj")
    data = stl_bytes(mesh, path.stem) if kind == "stl" else obj_text(mesh, path.stem).encode("ascii")

    def save(temporary: Path) -> None:
        temporary.write_bytes(data)

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
        mesh = mask_mesh(regions[index], reorient.spacing).transformed(matrix)
        written.append(write_mesh(targets[region], mesh, files=files))
    progress(1.0, f"{len(written)} meshes written")
    return written
