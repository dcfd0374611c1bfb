"""Measurements a radiologist makes on a study: rulers, ellipse ROIs, ROI statistics, RANO axes.

Every point is a float RAS voxel coordinate (x to the Right, y Anterior, z Superior; integers are
voxel centres) of the study's RAS-ordered arrays (`app.display_volume.DisplayVolume`). Lengths are
measured in world millimetres through the RAS voxel -> mm affine, never by assuming isotropic
voxels. A measurement set is saved as JSON with the grid it was made on, so it is never drawn on
another study by mistake.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from brainseg_gui.core.errors import BrainSegError

Point = tuple[float, float, float]
Segment = tuple[Point, Point]

#: The format name and version written into a saved measurement file.
FORMAT = "brainseg-measurements"
VERSION = 1


class MeasurementError(BrainSegError):
    """A measurement file cannot be read, or was made on another grid."""


# ---- geometry --------------------------------------------------------------------------------
def as_affine(geometry: Any) -> np.ndarray:
    """A 4x4 RAS voxel -> mm affine from an affine, three voxel sizes, or an object with `ras_affine`.

    Accepting spacing keeps synthetic tests short; accepting a DisplayVolume (duck-typed: core does
    not import the app layer) lets callers pass what they hold.
    """
    geometry = getattr(geometry, "ras_affine", geometry)
    array = np.asarray(geometry, dtype=float)
    if array.shape == (3,):
        return np.diag([*array, 1.0])
    if array.shape != (4, 4) or not np.all(np.isfinite(array)):
        raise ValueError(f"expected a 4x4 affine or three voxel sizes, got an array of shape {array.shape}")
    return array


def distance_mm(geometry: Any, a: Sequence[float], b: Sequence[float]) -> float:
    """World distance in mm between two float RAS voxel coordinates (anisotropic, oblique: exact)."""
    linear = as_affine(geometry)[:3, :3]
    return float(np.linalg.norm(linear @ (np.asarray(b, float) - np.asarray(a, float))))


def voxel_volume_ml(geometry: Any) -> float:
    return float(abs(np.linalg.det(as_affine(geometry)[:3, :3]))) / 1000.0


def angle_deg(geometry: Any, first: Segment, second: Segment) -> float:
    """Angle in world space between two segments' directions, 0-90 degrees."""
    linear = as_affine(geometry)[:3, :3]
    u = linear @ (np.asarray(first[1], float) - np.asarray(first[0], float))
    v = linear @ (np.asarray(second[1], float) - np.asarray(second[0], float))
    norms = float(np.linalg.norm(u) * np.linalg.norm(v))
    if norms == 0.0:
        return 0.0
    return math.degrees(math.acos(min(1.0, abs(float(u @ v)) / norms)))


# ---- measurements ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Ruler:
    """A straight line between two float RAS voxel coordinates."""

    a: Point
    b: Point

    def length_mm(self, geometry: Any) -> float:
        return distance_mm(geometry, self.a, self.b)

    def axis(self) -> int | None:
        """The RAS axis both ends share (the plane it was drawn in; z first), None if oblique."""
        for axis in (2, 1, 0):
            if self.a[axis] == self.b[axis]:
                return axis
        return None


@dataclass(frozen=True)
class EllipseRoi:
    """An axis-aligned ellipse on one slice: `axis` is the RAS axis held at `index`; `centre` and
    `radii` are in voxels along the two other axes, in increasing axis order (axial: x, y)."""

    axis: int
    index: int
    centre: tuple[float, float]
    radii: tuple[float, float]

    def mask(self, shape: Sequence[int]) -> np.ndarray:
        return ellipse_mask(shape, self.axis, self.index, self.centre, self.radii)

    def where(self) -> tuple[Any, ...]:
        """Index of its slice in a volume: `volume[roi.where()]` is the 2D slice it lies on."""
        index: list[Any] = [slice(None)] * 3
        index[self.axis] = int(self.index)
        return tuple(index)

    def slice_mask(self, shape: Sequence[int]) -> np.ndarray:
        """Bool 2D mask on its slice (`volume[roi.where()]`): statistics without a full-size mask."""
        first, second = in_plane_axes(self.axis)
        if min(self.radii) <= 0:
            return np.zeros((int(shape[first]), int(shape[second])), dtype=bool)
        u = (np.arange(int(shape[first])) - self.centre[0]) / self.radii[0]
        v = (np.arange(int(shape[second])) - self.centre[1]) / self.radii[1]
        return u[:, None] ** 2 + v[None, :] ** 2 <= 1.0


def in_plane_axes(axis: int) -> tuple[int, int]:
    """The two RAS axes of a slice through `axis`, in increasing order (the slice's (h, v))."""
    first, second = (a for a in range(3) if a != axis)
    return first, second


def ellipse_mask(shape: Sequence[int], axis: int, index: int, centre: Sequence[float],
                 radii: Sequence[float]) -> np.ndarray:
    """Bool volume of `shape`: the voxels of slice `index` through `axis` whose centres lie inside
    the ellipse (centre and radii in voxels along the in-plane axes, see `EllipseRoi`)."""
    shape = tuple(int(n) for n in shape)
    mask = np.zeros(shape, dtype=bool)
    if 0 <= index < shape[axis]:
        roi = EllipseRoi(axis, int(index), (float(centre[0]), float(centre[1])), (float(radii[0]), float(radii[1])))
        mask[roi.where()] = roi.slice_mask(shape)
    return mask


@dataclass(frozen=True)
class SequenceStatistics:
    mean: float
    sd: float  # population SD (ddof=0), as 3D Slicer's segment statistics
    minimum: float
    maximum: float


@dataclass(frozen=True)
class RoiStatistics:
    """Intensity statistics inside one mask, per sequence, and the mask's size."""

    voxels: int
    volume_ml: float
    sequences: Mapping[str, SequenceStatistics] = field(default_factory=dict)


def roi_statistics(images: Mapping[str, np.ndarray], mask: np.ndarray, voxel_volume_ml: float) -> RoiStatistics:
    """Mean, SD, min and max of each sequence inside `mask` (same grid as the images), in float64.

    An empty mask gives zero voxels and no sequences: there is nothing to average.
    """
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    stats: dict[str, SequenceStatistics] = {}
    if count:
        for name, image in images.items():
            if image.shape != mask.shape:
                raise ValueError(f"{name} has shape {image.shape}, the mask {mask.shape}")
            values = np.asarray(image[mask], dtype=np.float64)
            stats[name] = SequenceStatistics(float(values.mean()), float(values.std()),
                                             float(values.min()), float(values.max()))
    return RoiStatistics(count, count * float(voxel_volume_ml), MappingProxyType(stats))


@dataclass(frozen=True)
class RanoMeasurement:
    """Bidimensional (RANO) measurement on the axial slice `slice_z`: the long axis, the axis
    perpendicular to it, their lengths in mm and product in mm^2. `adjusted`: moved by the user."""

    slice_z: int
    long_axis: Segment
    short_axis: Segment
    long_mm: float
    short_mm: float
    product_mm2: float
    angle_deg: float  # between the two axes in world space; 90 when computed automatically +- tolerance
    adjusted: bool = False


def rano_from_axes(geometry: Any, long_axis: Segment, short_axis: Segment, *,
                   adjusted: bool = True) -> RanoMeasurement:
    """A RANO measurement from two segments on one axial slice (the user moved an end): lengths,
    product and angle recomputed in mm. The slice is the long axis's (its ends share z)."""
    long_axis = (_point(long_axis[0]), _point(long_axis[1]))
    short_axis = (_point(short_axis[0]), _point(short_axis[1]))
    # the axes keep the roles given even if the "short" one was dragged longer: swapping them would
    # move the line under the user's mouse to the other axis in the middle of the drag
    long_mm = distance_mm(geometry, *long_axis)
    short_mm = distance_mm(geometry, *short_axis)
    return RanoMeasurement(round(long_axis[0][2]), long_axis, short_axis, long_mm, short_mm,
                           long_mm * short_mm, angle_deg(geometry, long_axis, short_axis), adjusted)


def _point(values: Sequence[float]) -> Point:
    x, y, z = (float(v) for v in values)
    return x, y, z


# ---- saving ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasurementSet:
    """Everything measured on one study, with its grid (shape and RAS affine) for checking on load."""

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    rulers: tuple[Ruler, ...] = ()
    ellipses: tuple[EllipseRoi, ...] = ()
    rano: RanoMeasurement | None = None

    def to_json(self) -> str:
        rano = self.rano
        return json.dumps({
            "format": FORMAT, "version": VERSION,
            "grid": {"shape": list(self.shape), "ras_affine": [list(row) for row in self.affine]},
            "rulers": [{"a": list(r.a), "b": list(r.b)} for r in self.rulers],
            "ellipses": [{"axis": e.axis, "index": e.index, "centre": list(e.centre), "radii": list(e.radii)}
                         for e in self.ellipses],
            "rano": None if rano is None else {
                "long_axis": [list(p) for p in rano.long_axis], "short_axis": [list(p) for p in rano.short_axis],
                "adjusted": rano.adjusted},
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "the measurement file") -> MeasurementSet:
        """Parse `to_json`'s output; anything else raises MeasurementError naming `source` and the problem."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise MeasurementError(f"{source} is not a BrainSeg measurement file")
            if data.get("version") != VERSION:
                raise MeasurementError(f"{source} has version {data.get('version')!r}; this BrainSeg reads {VERSION}")
            shape = tuple(int(n) for n in data["grid"]["shape"])
            affine = as_affine(data["grid"]["ras_affine"])
            if len(shape) != 3:
                raise ValueError(f"a grid shape of {len(shape)} sizes")
            rulers = tuple(Ruler(_point(r["a"]), _point(r["b"])) for r in data["rulers"])
            ellipses = tuple(EllipseRoi(int(e["axis"]), int(e["index"]), _pair(e["centre"]), _pair(e["radii"]))
                             for e in data["ellipses"])
            rano = None
            if data.get("rano") is not None:
                r = data["rano"]
                rano = rano_from_axes(affine, (_point(r["long_axis"][0]), _point(r["long_axis"][1])),
                                      (_point(r["short_axis"][0]), _point(r["short_axis"][1])),
                                      adjusted=bool(r.get("adjusted", False)))
        except MeasurementError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise MeasurementError(f"{source} is damaged: {type(error).__name__} {error}") from None
        return cls((shape[0], shape[1], shape[2]), tuple(tuple(float(v) for v in row) for row in affine),
                   rulers, ellipses, rano)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    first, second = (float(v) for v in values)
    return first, second


# ---- RANO ------------------------------------------------------------------------------------
#: Chords within this angle of perpendicular to the long axis count as perpendicular: RANO readers
#: place the second diameter by eye; on a voxel boundary an exact 90 degrees is rarely available.
PERPENDICULAR_TOLERANCE_DEG = 5.0


def rano(et_mask: np.ndarray, geometry: Any, *,
         tolerance_deg: float = PERPENDICULAR_TOLERANCE_DEG) -> RanoMeasurement | None:
    """The RANO bidimensional measurement of the enhancing tumour (None when `et_mask` is empty).

    et_mask: bool (x, y, z) RAS volume of ET; geometry: its RAS affine (or spacing, see `as_affine`).
    Each connected ET cross-section of each axial slice is one candidate lesion, measured as a reader
    does: the longest diameter (longest chord of its outline, in mm) and the longest chord within
    `tolerance_deg` of perpendicular to it. The cross-section with the largest product is reported
    (where the lesion looks largest: the slice a reader would pick). Holes are filled first, so a
    rim-enhancing lesion is measured across its necrotic centre, as RANO prescribes. Outlines run
    along voxel edges (the 0.5 iso-line), so a lesion n voxels wide measures n voxels, not n - 1.
    """
    from scipy import ndimage
    from skimage import measure

    mask = np.asarray(et_mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    affine = as_affine(geometry)
    to_plane = _plane_basis(affine)  # every axial slice of one grid has the same in-plane geometry
    candidates: list[tuple[float, int, int, int, np.ndarray, np.ndarray]] = []  # long mm, i, j, z, outline, mm
    for z in (int(z) for z in np.flatnonzero(mask.any(axis=(0, 1)))):
        for region in measure.regionprops(measure.label(mask[:, :, z], connectivity=2)):
            filled = np.pad(ndimage.binary_fill_holes(region.image), 1).astype(np.float32)
            outline = np.concatenate(measure.find_contours(filled, 0.5, fully_connected="high"))
            outline += np.array(region.bbox[:2], dtype=float) - 1.0  # padded crop -> slice voxels
            points_mm = outline @ to_plane.T
            candidates.append((*_longest_chord(points_mm), z, outline, points_mm))
    # the product is at most long^2: measure the longest first and stop when none can win
    candidates.sort(key=lambda c: c[0], reverse=True)
    best: tuple[float, float, Segment, Segment] | None = None  # product, long, long axis, short axis
    for long_mm, i, j, z, outline, points_mm in candidates:
        if best is not None and long_mm * long_mm <= best[0]:
            break
        k, m = _longest_perpendicular(points_mm, points_mm[j] - points_mm[i], tolerance_deg)
        product = long_mm * float(np.linalg.norm(points_mm[m] - points_mm[k]))
        if best is None or (product, long_mm) > (best[0], best[1]):
            best = (product, long_mm, _segment(outline, i, j, z), _segment(outline, k, m, z))
    if best is None:
        return None
    return rano_from_axes(affine, best[2], best[3], adjusted=False)


def _plane_basis(affine: np.ndarray) -> np.ndarray:
    """(2, 2) map from in-slice voxel (x, y) to orthonormal 2D mm coordinates of the slice plane.

    The slice's two axes may be anisotropic, sheared or oblique in the world; the QR factor keeps
    every in-plane distance and angle, so 2D geometry (hull, angles) is exact.
    """
    _q, r = np.linalg.qr(affine[:3, :2])
    return r


def _longest_chord(points: np.ndarray) -> tuple[float, int, int]:
    """(length, i, j): the farthest pair of points. The farthest pair lies on the convex hull
    (scipy's Qhull); the pair search over hull vertices is a few hundred distances, so it is a
    plain pdist rather than rotating calipers, which no maintained library offers."""
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    try:
        index = ConvexHull(points).vertices
    except (QhullError, ValueError):  # collinear or too few points: every point is a candidate
        index = np.arange(len(points))
    if len(index) < 2:
        return 0.0, int(index[0]), int(index[0])
    distances = pdist(points[index])
    best = int(np.argmax(distances))
    i, j = _pair_of_condensed(best, len(index))
    return float(distances[best]), int(index[i]), int(index[j])


def _pair_of_condensed(position: int, n: int) -> tuple[int, int]:
    """The (i, j), i < j, of a position in scipy's condensed distance vector of n points."""
    i = int(n - 2 - math.floor(math.sqrt(-8 * position + 4 * n * (n - 1) - 7) / 2.0 - 0.5))
    j = int(position + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2)
    return i, j


def _longest_perpendicular(points: np.ndarray, direction: np.ndarray, tolerance_deg: float) -> tuple[int, int]:
    """Indices of the longest chord between outline points within `tolerance_deg` of perpendicular to
    `direction` (hand-written: no library searches chords by direction). When no pair is within the
    tolerance (a one- or two-voxel lesion), the pair closest to perpendicular is taken."""
    norm = float(np.linalg.norm(direction))
    if norm == 0.0 or len(points) < 2:
        return 0, 0
    unit = direction / norm
    along = points @ unit
    across = points @ np.array([-unit[1], unit[0]])
    limit = math.tan(math.radians(tolerance_deg))
    best_length, best_pair = -1.0, (0, 0)
    fallback_ratio, fallback_pair = math.inf, (0, 0)
    for start in range(0, len(points), 512):  # rows in blocks: memory stays ~ 512 x n
        rows = slice(start, start + 512)
        d_along = np.abs(along[rows, None] - along[None, :])
        d_across = np.abs(across[rows, None] - across[None, :])
        length2 = d_along ** 2 + d_across ** 2
        within = (d_along <= limit * d_across) & (length2 > 0)
        if within.any():
            candidate = np.where(within, length2, -1.0)
            flat = int(np.argmax(candidate))
            if candidate.flat[flat] > best_length:
                best_length = float(candidate.flat[flat])
                best_pair = (start + flat // len(points), flat % len(points))
        elif best_length < 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(d_across > 0, d_along / d_across, np.inf)
            flat = int(np.argmin(ratio))
            if ratio.flat[flat] < fallback_ratio:
                fallback_ratio = float(ratio.flat[flat])
                fallback_pair = (start + flat // len(points), flat % len(points))
    return best_pair if best_length >= 0 else fallback_pair


def _segment(outline: np.ndarray, i: int, j: int, z: int) -> Segment:
    return (float(outline[i, 0]), float(outline[i, 1]), float(z)), (float(outline[j, 0]), float(outline[j, 1]), float(z))
