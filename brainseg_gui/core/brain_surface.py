"""A deformable brain surface in the manner of FSL's BET (Smith, Hum. Brain Mapp. 2002), radial form.

The surface is a sphere of directions (a subdivided icosahedron) with one radius per direction,
around a centre inside the brain. Each iteration moves every radius by two forces:
- intensity: looking inwards from the surface, if the darkest value within `d1` mm stays above a
  local threshold (a fraction `bt` between the background and the local tissue level), the
  surface is still in the brain and grows; if it has crossed the dark CSF/skull gap, it shrinks;
- smoothness: a pull towards the neighbours' mean radius, strong where the surface bends sharply
  (radius of curvature below ~3 mm) and weak where it is flat, so it cannot leak through thin
  bridges into the scalp or the neck.
Keeping one radius per direction (a star-shaped surface) makes it robust and its mask cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from brainseg_gui.core.progress import CancelToken

log = logging.getLogger(__name__)

#: BET's curvature limits (mm) of the smoothness force, and its step scale.
R_MIN, R_MAX = 3.33, 10.0
STEP = 0.05
#: The surface has settled when, over SETTLE_EVERY iterations, 99% of its radii moved less than
#: SETTLED_MM (growing from half the head's radius takes ~300 iterations; settling saves the rest).
SETTLE_EVERY, SETTLED_MM = 25, 0.2
#: How the image continues past its field of view (scipy mode), for heads the FOV cuts.
EDGE_MODE = "constant"


@dataclass(frozen=True)
class Sphere:
    """Unit directions (n, 3) and each one's neighbour list as a row-normalised sparse matrix."""

    directions: np.ndarray
    mean_of_neighbours: object  # scipy.sparse matrix (n, n)
    spacing_rad: float  # mean angle between neighbouring directions


def icosphere(subdivisions: int = 4) -> Sphere:
    """A geodesic sphere of 10 * 4**s + 2 directions (2562 for s = 4), by subdividing an icosahedron."""
    from scipy import sparse

    t = (1.0 + 5 ** 0.5) / 2.0
    vertices = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t),
                (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
             (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    points = [np.array(v, dtype=np.float64) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        faces = _subdivide(faces, points)
    directions = np.array(points)
    edges = np.array([(a, b) for face in faces for a, b in ((face[0], face[1]), (face[1], face[2]),
                                                           (face[2], face[0]))])
    n = len(directions)
    adjacency = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    mean = sparse.diags(1.0 / degree) @ adjacency
    angles = np.arccos(np.clip((directions[edges[:, 0]] * directions[edges[:, 1]]).sum(axis=1), -1, 1))
    return Sphere(directions, mean.tocsr(), float(angles.mean()))


def _subdivide(faces: list[tuple[int, int, int]], points: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """Split every triangle in four; new vertices (edge midpoints on the sphere) go into `points`."""
    midpoints: dict[tuple[int, int], int] = {}

    def middle(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoints:
            point = points[a] + points[b]
            points.append(point / np.linalg.norm(point))
            midpoints[key] = len(points) - 1
        return midpoints[key]

    out = []
    for a, b, c in faces:
        ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
        out += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    return out


def fit_surface(
    image: np.ndarray,
    spacing: tuple[float, float, float],
    centre_voxel: np.ndarray,
    radius_mm: np.ndarray,
    *,
    sphere: Sphere,
    low: float,
    high: float,
    bt: float = 0.5,
    d1_mm: float = 20.0,
    iterations: int = 600,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Evolve the radii (mm, one per direction of `sphere`) of a surface around `centre_voxel`.

    `image` is (i, j, k) with voxel sizes `spacing`; `low` / `high` are the background and the
    tissue intensity levels (BET's t2 and tm). Returns the final radii; raises Cancelled
    (checked every iteration) when `cancel` is set.
    """
    from scipy import ndimage

    spacing_arr = np.asarray(spacing, dtype=np.float64)
    radius = np.array(radius_mm, dtype=np.float64)
    step_mm = max(1.0, 0.5 * float(spacing_arr.min()))
    inward = np.arange(0.0, d1_mm + 1e-6, step_mm)  # distances sampled inwards from the surface
    near = inward <= d1_mm / 2.0
    directions_vox = sphere.directions / spacing_arr  # mm along a direction -> voxels
    e = (1.0 / R_MIN + 1.0 / R_MAX) / 2.0
    f = 6.0 / (1.0 / R_MIN - 1.0 / R_MAX)
    previous = radius.copy()
    for iteration in range(1, iterations + 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        depth = np.clip(radius[:, None] - inward[None, :], 0.0, None)  # (n, samples) mm from the centre
        coords = centre_voxel[:, None, None] + directions_vox.T[:, :, None] * depth[None, :, :]
        values = ndimage.map_coordinates(image, coords.reshape(3, -1), order=1, mode=EDGE_MODE,
                                         cval=0.0).reshape(depth.shape)
        i_min = np.maximum(low, values.min(axis=1))
        i_max = np.minimum(high, values[:, near].max(axis=1))
        threshold = (i_max - low) * bt + low
        f3 = 2.0 * (i_min - threshold) / np.maximum(i_max - low, 1e-6)
        spacing_mm = np.maximum(radius * sphere.spacing_rad, 1e-3)
        normal = sphere.mean_of_neighbours @ radius - radius  # type: ignore[operator]
        curvature = 2.0 * np.abs(normal) / spacing_mm ** 2
        f2 = (1.0 + np.tanh(f * (curvature - e))) / 2.0
        radius = np.maximum(radius + f2 * normal + STEP * spacing_mm * f3, 1.0)
        if iteration % SETTLE_EVERY == 0:
            if np.percentile(np.abs(radius - previous), 99) < SETTLED_MM:
                break  # the surface has stopped moving: more iterations change nothing
            previous = radius.copy()
    log.debug("brain surface: %d iterations, radii %.0f-%.0f mm", iteration, radius.min(), radius.max())
    return radius


def inside_surface(shape: tuple[int, int, int], spacing: tuple[float, float, float], centre_voxel: np.ndarray,
                   sphere: Sphere, radius: np.ndarray, *, lookup: int = 180) -> np.ndarray:
    """Boolean mask of the voxels inside the star-shaped surface (radii interpolated by direction)."""
    from scipy.spatial import cKDTree

    # A (polar, azimuth) table of the surface radius, filled from the 3 nearest directions.
    polar = (np.arange(lookup) + 0.5) * np.pi / lookup
    azimuth = (np.arange(2 * lookup) + 0.5) * np.pi / lookup
    pp, aa = np.meshgrid(polar, azimuth, indexing="ij")
    table_dirs = np.stack([np.sin(pp) * np.cos(aa), np.sin(pp) * np.sin(aa), np.cos(pp)], axis=-1)
    distance, index = cKDTree(sphere.directions).query(table_dirs.reshape(-1, 3), k=3)
    weights = 1.0 / np.maximum(distance, 1e-9)
    table = ((radius[index] * weights).sum(axis=1) / weights.sum(axis=1)).reshape(pp.shape)
    mask = np.zeros(shape, dtype=bool)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    grid_i, grid_j = np.meshgrid((np.arange(shape[0]) - centre_voxel[0]) * spacing_arr[0],
                                 (np.arange(shape[1]) - centre_voxel[1]) * spacing_arr[1], indexing="ij")
    for k in range(shape[2]):  # slice by slice keeps the memory small
        z = (k - centre_voxel[2]) * spacing_arr[2]
        r = np.sqrt(grid_i ** 2 + grid_j ** 2 + z ** 2)
        p = np.clip((np.arccos(np.clip(z / np.maximum(r, 1e-9), -1, 1)) / np.pi * lookup).astype(int),
                    0, lookup - 1)
        a = (np.mod(np.arctan2(grid_j, grid_i), 2 * np.pi) / np.pi * lookup).astype(int) % (2 * lookup)
        mask[:, :, k] = r <= table[p, a]
    return mask
