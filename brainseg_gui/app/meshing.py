"""Masks -> smoothed, closed surface meshes (numpy arrays; no VTK, no window; runs in a worker).

The 3D view draws them (it turns them into VTK polydata, ui/view_3d.py) and the exports write them
(app/mesh_export.py), so the CLI and the app layer need no VTK. Surfaces come from scikit-image's
marching cubes; the smoothing is Taubin's lambda|mu filter, written here because neither
scikit-image nor scipy has one (it is two sparse matrix products an iteration) and it keeps a
shape's volume where plain Laplacian smoothing shrinks it.

Coordinates are millimetres in the RAS voxel frame of `DisplayVolume` (voxel centre (x, y, z) at
(x*sx, y*sy, z*sz)), so the slice views and the 3D view agree without any further transform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress

#: Taubin smoothing: enough to hide the voxel steps, little enough to keep small ET islands.
SMOOTHING_ITERATIONS = 20
TAUBIN_LAMBDA, TAUBIN_MU = 0.5, -0.53  # pass band k = 1/lambda + 1/mu ~ 0.11
#: The brain surface is only context: built at half resolution and smoothed less.
BRAIN_STEP = 2


@dataclass(frozen=True)
class Mesh:
    """A triangle surface: vertices (n, 3) float mm, faces (m, 3) int32 (counter-clockwise seen
    from outside), normals (n, 3) unit outward vertex normals."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray

    @classmethod
    def empty(cls) -> Mesh:
        return cls(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32))

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0

    def volume_mm3(self) -> float:
        """Enclosed volume (divergence theorem; positive for an outward-facing closed surface)."""
        a, b, c = (self.vertices[self.faces[:, i]].astype(np.float64) for i in range(3))
        return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    def transformed(self, matrix: np.ndarray) -> Mesh:
        """The mesh with its points mapped by a 4x4 matrix; faces flipped when the matrix mirrors,
        so the surface still faces outward."""
        matrix = np.asarray(matrix, dtype=np.float64)
        vertices = self.vertices @ matrix[:3, :3].T + matrix[:3, 3]
        faces = self.faces if np.linalg.det(matrix[:3, :3]) > 0 else self.faces[:, ::-1]
        faces = np.ascontiguousarray(faces)
        return Mesh(vertices.astype(np.float32), faces, vertex_normals(vertices, faces))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: the area-weighted sum of the faces around each vertex."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros(vertices.shape, dtype=np.float64)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.where(length > 0, length, 1.0)).astype(np.float32)


def taubin_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Taubin's lambda|mu smoothing with the uniform (umbrella) Laplacian; (n, 3) float64."""
    from scipy import sparse

    n = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    average = sparse.diags(1.0 / np.where(degree > 0, degree, 1.0)) @ adjacency  # mean of the neighbours
    points = np.asarray(vertices, dtype=np.float64)
    for _ in range(iterations):
        points = points + TAUBIN_LAMBDA * (average @ points - points)
        points = points + TAUBIN_MU * (average @ points - points)
    return points


def mask_mesh(mask: np.ndarray, spacing: tuple[float, float, float], *,
              iterations: int = SMOOTHING_ITERATIONS, step: int = 1) -> Mesh:
    """Closed, smoothed surface of a 3D boolean mask; an empty Mesh for an empty mask.

    mask: (x, y, z) bool in RAS voxel order. spacing: mm per voxel along x, y, z. `step` > 1
    subsamples the mask first (for large context surfaces).
    """
    from skimage.measure import marching_cubes

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return Mesh.empty()
    lows = []
    crop_slices = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lows.append(int(hits[0]))
        crop_slices.append(slice(int(hits[0]), int(hits[-1]) + 1, step))
    crop = mask[tuple(crop_slices)]
    padded = np.pad(crop, 1).astype(np.float32)  # a border of background closes the surface
    voxel = tuple(float(s) * step for s in spacing)
    vertices, faces, _normals, _values = marching_cubes(padded, level=0.5, spacing=voxel, allow_degenerate=False)
    origin = np.array([(low - step) * s for low, s in zip(lows, spacing)])
    faces = faces.astype(np.int32)
    points = vertices.astype(np.float64) + origin
    if iterations > 0:
        points = taubin_smooth(points, faces, iterations)
    mesh = Mesh(points.astype(np.float32), faces, vertex_normals(points, faces))
    if mesh.volume_mm3() < 0:  # marching cubes' winding faces the higher values (inside): turn it out
        faces = np.ascontiguousarray(faces[:, ::-1])
        mesh = Mesh(mesh.vertices, faces, vertex_normals(points, faces))
    return mesh


def region_meshes(regions: np.ndarray, spacing: tuple[float, float, float], brain: np.ndarray | None = None,
                  *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> Mapping[str, Mesh]:
    """Surfaces of WT, TC, ET ((3, x, y, z) bool, RAS) and, if given, of the brain mask."""
    cancel = cancel or CancelToken()
    meshes: dict[str, Mesh] = {}
    names = list(REGIONS) + (["brain"] if brain is not None else [])
    for index, name in enumerate(names):
        cancel.raise_if_cancelled()
        progress(index / len(names), f"Building the {name} surface")
        if brain is not None and name == "brain":
            meshes[name] = mask_mesh(brain, spacing, iterations=10, step=BRAIN_STEP)
        else:
            meshes[name] = mask_mesh(regions[index], spacing)
    progress(1.0, "Surfaces ready")
    return meshes
