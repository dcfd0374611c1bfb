"""The prepared space of a study, its JSON record, and mapping between it and the original grids.

Prepared space is the reference sequence's world (RAS mm) sampled on a grid of `resolution_mm`
isotropic voxels in the training data's LPS axis order. Each sequence's record holds the rigid
4x4 matrix that maps a prepared-space world point to the same anatomy in that sequence's
ORIGINAL world: so a prepared image is `original(matrix @ x)`, and a mask predicted in prepared
space goes back onto an original grid through the inverse (`map_to_original`, nearest neighbour).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from brainseg_gui.core.errors import BrainSegError, StudyLoadError
from brainseg_gui.core.read_guard import read_small_text
from brainseg_gui.core.study import SEQUENCES, Grid

RECORD_FORMAT = "brainseg-prepare"
RECORD_VERSION = 1
#: Axis order of prepared images: that of the BraTS training data.
PREPARED_AXCODES = ("L", "P", "S")


@dataclass(frozen=True)
class SequenceRecord:
    """Where one prepared sequence came from and how it was moved."""

    name: str
    source: Path
    original_grid: Grid
    matrix: np.ndarray  # 4x4 RAS: prepared world -> original world of this sequence
    file: str  # the prepared image's file name (in the record's folder)


@dataclass(frozen=True)
class PrepareRecord:
    """The parsed `<id>_prepare.json`: prepared grid and per-sequence provenance; `data` is the JSON."""

    case_id: str
    reference: str
    resolution_mm: float
    grid: Grid
    sequences: Mapping[str, SequenceRecord]
    data: Mapping[str, Any]
    path: Path | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in SEQUENCES if name not in self.sequences)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: Path | None = None) -> PrepareRecord:
        """Parse and check a record; raises StudyLoadError naming `path` and what is wrong."""
        where = f"{path}: " if path is not None else ""
        if data.get("format") != RECORD_FORMAT:
            raise StudyLoadError(f"{where}not a BrainSeg prepare record (format {data.get('format')!r})")
        if int(data.get("version", 0)) > RECORD_VERSION:
            raise StudyLoadError(f"{where}prepare record version {data.get('version')} is newer than this "
                                 f"BrainSeg reads ({RECORD_VERSION})")
        try:
            grid = grid_from_dict(data["prepared_grid"])
            sequences = {}
            for name, entry in data["sequences"].items():
                if name not in SEQUENCES:
                    raise StudyLoadError(f"{where}unknown sequence {name!r} in the record")
                matrix = np.array(entry["transform"]["matrix"], dtype=np.float64)
                if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
                    raise StudyLoadError(f"{where}the {name} matrix is not a finite 4x4: {matrix.tolist()}")
                sequences[name] = SequenceRecord(name, Path(entry["source"]), grid_from_dict(entry["original_grid"]),
                                                 matrix, str(entry["file"]))
            return cls(str(data["case_id"]), str(data["reference"]), float(data["resolution_mm"]), grid,
                       MappingProxyType(sequences), MappingProxyType(dict(data)), path)
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyLoadError(f"{where}incomplete prepare record ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def load(cls, path: Path) -> PrepareRecord:
        path = Path(path)
        try:
            data = json.loads(read_small_text(path, "prepare record"))
        except json.JSONDecodeError as exc:
            raise StudyLoadError(f"cannot read the prepare record {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise StudyLoadError(f"{path}: a prepare record is a JSON object")
        return cls.from_dict(data, path=path)


def grid_to_dict(grid: Grid) -> dict[str, Any]:
    return {"shape": list(grid.shape), "affine": [[float(v) for v in row] for row in grid.affine],
            "spacing_mm": list(grid.spacing), "orientation": "".join(grid.axcodes)}


def grid_from_dict(data: Mapping[str, Any]) -> Grid:
    return Grid(tuple(int(n) for n in data["shape"]), np.array(data["affine"], dtype=np.float64))  # type: ignore[arg-type]


def prepared_grid(reference: Grid, resolution_mm: float = 1.0) -> Grid:
    """An LPS grid of `resolution_mm` voxels covering the reference grid's world box.

    An axis-aligned LPS reference at that resolution gives back exactly its own grid, so a
    BraTS-like reference is not interpolated.
    """
    if not np.isfinite(resolution_mm) or resolution_mm <= 0:
        raise BrainSegError(f"the resolution must be a positive number of mm, got {resolution_mm}")
    low, high = reference.world_bounds()
    span = high - low
    shape = tuple(int(np.floor(s / resolution_mm + 1e-6)) + 1 for s in span)
    # Centre the new voxel centres in the box (they coincide with the old ones when they can).
    margin = (span - (np.array(shape) - 1) * resolution_mm) / 2.0
    affine = np.diag([-resolution_mm, -resolution_mm, resolution_mm, 1.0])
    affine[:3, 3] = (high[0] - margin[0], high[1] - margin[1], low[2] + margin[2])
    return Grid(shape, affine)  # type: ignore[arg-type]


def resample_through(array: np.ndarray, source: Grid, target: Grid, matrix: np.ndarray, *,
                     nearest: bool = False) -> np.ndarray:
    """`out(v) = array at world matrix @ target.affine @ v` (zero outside the source).

    With `matrix` a record's (prepared -> original) map this brings an original image into
    prepared space; with its inverse, prepared data onto an original grid. Linear interpolation
    (float32 out) or nearest neighbour (dtype kept).
    """
    from scipy import ndimage

    if array.shape != source.shape:
        raise BrainSegError(f"array shape {array.shape} is not the source grid's {source.shape}")
    voxel = np.linalg.inv(source.affine) @ np.asarray(matrix, dtype=np.float64) @ target.affine
    if np.allclose(voxel, np.eye(4), atol=1e-6) and source.shape == target.shape:
        return np.array(array, dtype=array.dtype if nearest else np.float32)
    data = array if nearest else np.asarray(array, dtype=np.float32)
    return ndimage.affine_transform(data, voxel[:3, :3], offset=voxel[:3, 3], output_shape=target.shape,
                                    order=0 if nearest else 1, mode="constant", cval=0,
                                    output=array.dtype if nearest else np.float32)


def map_to_original(labels_prepared: np.ndarray, record: PrepareRecord | Mapping[str, Any] | Path | Any,
                    sequence: str = "flair") -> tuple[np.ndarray, Grid]:
    """A label map (or mask) on the prepared grid -> the same labels on `sequence`'s original grid.

    `record` is a PrepareRecord, its JSON dict, the path of `<id>_prepare.json`, or a
    PreparedStudy. Nearest-neighbour through the inverse of the sequence's rigid transform, so
    label values are kept. Returns (labels on the original grid, that grid).
    """
    parsed = as_record(record)
    if sequence not in parsed.sequences:
        raise BrainSegError(f"{parsed.case_id}: no {sequence} in the prepared study (it has "
                            f"{', '.join(parsed.sequences)})")
    labels_prepared = np.asarray(labels_prepared)
    if labels_prepared.shape != parsed.grid.shape:
        raise BrainSegError(f"the labels have shape {labels_prepared.shape}, the prepared grid of "
                            f"{parsed.case_id} is {parsed.grid.shape}")
    entry = parsed.sequences[sequence]
    mapped = resample_through(labels_prepared, parsed.grid, entry.original_grid, np.linalg.inv(entry.matrix),
                              nearest=True)
    return mapped, entry.original_grid


def as_record(record: PrepareRecord | Mapping[str, Any] | Path | str | Any) -> PrepareRecord:
    """Whatever names a prepare record (object, JSON dict, path, PreparedStudy) as a PrepareRecord."""
    if isinstance(record, PrepareRecord):
        return record
    if isinstance(record, Mapping):
        return PrepareRecord.from_dict(record)
    if isinstance(record, str | Path):
        return PrepareRecord.load(Path(record))
    inner = getattr(record, "record", None)
    if isinstance(inner, PrepareRecord):
        return inner
    raise BrainSegError(f"not a prepare record: {type(record).__name__}")
