"""Measurements a radiologist makes on a study: rulers, ellipse ROIs, ROI statistics, RANO axes.

Every point is a float RAS voxel coordinate (x to the Right, y Anterior, z Superior; integers are
voxel centres) of the study's RAS-ordered arrays (`app.display_volume.DisplayVolume`). Lengths are
measured in world millimetres through the RAS voxel -> mm affine, never by assuming isotropic
voxels. A measurement set is saved as JSON with the grid it was made on, so it is never drawn on
another study by mistake. The automatic RANO search is core/rano.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.study import affine_voxel_ml

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
    return affine_voxel_ml(as_affine(geometry))


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


def ellipse_statistics(roi: EllipseRoi, images: Mapping[str, np.ndarray], shape: Sequence[int],
                       geometry: Any) -> RoiStatistics:
    """Per-sequence statistics inside an ellipse ROI: `images` are RAS arrays of `shape`, `geometry`
    their RAS affine. Only the ROI's slice is read, so it can follow a drag; off the grid: empty."""
    if not 0 <= roi.index < int(shape[roi.axis]):
        return roi_statistics({}, np.zeros(0, dtype=bool), voxel_volume_ml(geometry))
    where = roi.where()
    return roi_statistics({name: image[where] for name, image in images.items()}, roi.slice_mask(shape),
                          voxel_volume_ml(geometry))


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

    def check_grid(self, shape: Sequence[int], affine: Any, source: str = "the measurements") -> None:
        """Raise MeasurementError unless they were made on this RAS grid (`shape`, `affine`)."""
        if self.shape != tuple(int(n) for n in shape):
            raise MeasurementError(f"{source} was measured on a {_size(self.shape)} grid; "
                                   f"this study is {_size(shape)}")
        if not np.allclose(self.affine, as_affine(affine), atol=1e-3):
            raise MeasurementError(f"{source} was measured on another study: same grid size, "
                                   "different position or voxel size")

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


def read_measurements(path: Path, shape: Sequence[int], affine: Any) -> MeasurementSet:
    """A saved measurement file, checked to belong to the RAS grid (`shape`, `affine`) it is read for.

    Anything wrong (unreadable, not one, damaged, another grid) raises MeasurementError with one line
    that names the file and the problem.
    """
    from brainseg_gui.core.read_guard import read_small_text

    path = Path(path)
    try:
        text = read_small_text(path, "measurement file")
    except OSError as error:
        raise MeasurementError(f"cannot read {path}: {error.strerror or error}") from None
    except BrainSegError as error:
        raise MeasurementError(str(error)) from None
    saved = MeasurementSet.from_json(text, source=str(path))
    saved.check_grid(shape, affine, str(path))
    return saved


def _size(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    first, second = (float(v) for v in values)
    return first, second
