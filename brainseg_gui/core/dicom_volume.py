"""One DICOM image stack as a volume: pixels decoded, rescaled, stacked, on an exact grid.

Classic single-frame files and Enhanced MR multi-frame files are read through the same frames
(`core/dicom_index.py`); compressed transfer syntaxes are decoded by pydicom's pixel handlers
(pylibjpeg for JPEG Lossless and JPEG 2000, RLE natively) and one that cannot be decoded is named.
A stack with missing slices or uneven spacing is refused unless the caller accepts it; then the
slices are rebuilt on regular positions by linear interpolation along the slice normal, and a
warning says so. Duplicate positions are always refused (which image would be the slice?).

A *series file* (`.dcmseries`, JSON) names the frames of one stack. It lets a chosen series stand
wherever a sequence file can (a case folder, a prepare record): `image_io.read_image` reads it
here, from the original DICOM files, so nothing is copied and the geometry stays exact.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.dicom_geometry import GAP_FACTOR, check_stack, stack_grid
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.read_guard import check_declared_size, read_small_text, regular_file
from brainseg_gui.core.study import Grid

log = logging.getLogger(__name__)

SERIES_FILE_SUFFIX = ".dcmseries"
SERIES_FILE_FORMAT = "brainseg-dicom-series"


class GapsError(StudyLoadError):
    """A stack has missing slices or uneven spacing and the user has not accepted rebuilding it."""


def read_frames(frames: Sequence[Any], *, accept_gaps: bool = False,
                label: str = "series") -> tuple[np.ndarray, Grid, list[str]]:
    """Pixels of `frames` (one stack) as a float32 (i, j, k) volume, its RAS grid, and warnings."""
    ordered, geometry = check_stack(frames)
    if geometry.duplicate:
        raise StudyLoadError(f"{label}: {geometry.duplicate}; it is not one volume")
    if geometry.spacing is None and len(ordered) > 1:
        raise StudyLoadError(f"{label}: {'; '.join(geometry.problems) or 'no slice positions'}")
    irregular = list(geometry.gaps)
    if irregular and not accept_gaps:
        raise GapsError(f"{label}: {'; '.join(irregular)}; BrainSeg does not resample it silently: accept "
                        "rebuilding the missing slices by interpolation (--accept-gaps, or the tick box in "
                        "the viewer) or choose another series")
    # read_guard's one limit, as float32 (what the volume is built as), before any pixel is decoded
    check_declared_size(label, (int(ordered[0].columns), int(ordered[0].rows), len(ordered)), 4)
    slices = _pixels(ordered, label)
    warnings = [f"{label}: {p}" for p in geometry.problems if p not in geometry.gaps]
    if not irregular:
        return np.stack(slices, axis=-1), stack_grid(ordered), warnings
    volume, positions = _regular(ordered, slices, float(geometry.spacing or 1.0))
    warnings.append(f"{label}: {'; '.join(irregular)}: rebuilt on {len(positions)} regular slices "
                    f"({geometry.spacing:.3g} mm) by linear interpolation, as accepted")
    return volume, stack_grid(ordered, positions), warnings


def _pixels(frames: Sequence[Any], label: str) -> list[np.ndarray]:
    """Each frame as a float32 (columns, rows) = (i, j) array, rescaled to stored units."""
    import pydicom

    datasets: dict[Path, Any] = {}
    out = []
    for frame in frames:
        dataset = datasets.get(frame.path)
        if dataset is None:
            try:
                dataset = pydicom.dcmread(frame.path)
            except Exception as exc:  # pydicom raises many types on damaged files
                raise StudyLoadError(f"cannot read {frame.path}: {exc}") from exc
            datasets = {frame.path: dataset}  # keep one file open at a time (memory)
        pixels = _decode(dataset, frame.path, label)
        image = pixels[frame.number - 1] if frame.number is not None and pixels.ndim == 3 else pixels
        if image.ndim != 2:
            raise StudyLoadError(f"{frame.path}: expected a 2D grey image, got pixel data of shape {image.shape}")
        slope, intercept = _rescale(dataset, frame.number)
        image = image.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            image = image * np.float32(slope) + np.float32(intercept)
        out.append(np.ascontiguousarray(image.T))
    return out


def _decode(dataset: Any, path: Path, label: str) -> np.ndarray:
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as exc:  # missing decoder plug-ins raise RuntimeError/NotImplementedError/ValueError
        name = getattr(syntax, "name", None) or str(syntax)
        raise StudyLoadError(f"{label}: the pixel data of {path.name} is stored as {name} ({syntax}), which "
                             f"cannot be decoded here ({' '.join(str(exc).split())[:160]})") from exc


def _rescale(dataset: Any, number: int | None) -> tuple[float, float]:
    if number is not None and "PerFrameFunctionalGroupsSequence" in dataset:
        for groups in (dataset.PerFrameFunctionalGroupsSequence[number - 1],
                       *(dataset.get("SharedFunctionalGroupsSequence") or [])):
            items = groups.get("PixelValueTransformationSequence")
            if items:
                return float(items[0].get("RescaleSlope", 1) or 1), float(items[0].get("RescaleIntercept", 0) or 0)
    return float(dataset.get("RescaleSlope", 1) or 1), float(dataset.get("RescaleIntercept", 0) or 0)


def _regular_positions(frames: Sequence[Any], spacing: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """(depth of each frame along the stack, regular slice positions from the first to the last frame)."""
    first, last = np.asarray(frames[0].position), np.asarray(frames[-1].position)
    direction = last - first
    length = float(np.linalg.norm(direction))
    count = round(length / spacing) + 1
    unit = direction / (length or 1.0)
    depths = np.array([float(np.dot(np.asarray(f.position) - first, unit)) for f in frames])
    return depths, [first + unit * (length * k / max(count - 1, 1)) for k in range(count)]


def _regular(frames: Sequence[Any], slices: list[np.ndarray], spacing: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Slices at regular steps from the first to the last position, interpolated between neighbours."""
    depths, positions = _regular_positions(frames, spacing)
    first = np.asarray(frames[0].position)
    volume = np.empty((*slices[0].shape, len(positions)), dtype=np.float32)
    for k, position in enumerate(positions):
        depth = float(np.linalg.norm(position - first))
        upper = int(np.clip(np.searchsorted(depths, depth), 1, len(depths) - 1))
        lower = upper - 1
        span = depths[upper] - depths[lower]
        weight = 0.0 if span <= 0 else (depth - depths[lower]) / span
        volume[..., k] = (1 - weight) * slices[lower] + weight * slices[upper]
    return volume, positions


# -- series files ------------------------------------------------------------------------------------


def write_series_file(path: Path, series: Any, *, accept_gaps: bool = False,
                      extra: Mapping[str, Any] | None = None, files: FileSet | None = None) -> Path:
    """Write a `.dcmseries` naming the main stack of `series` (a DicomSeries), all-or-nothing (or into `files`)."""
    stack = series.main_stack
    if stack is None:
        raise StudyLoadError(f"series {series.label} holds no images")
    data = {
        "format": SERIES_FILE_FORMAT, "version": 1, "study_uid": series.study_uid, "series_uid": series.uid,
        "series_number": series.header.series_number, "description": series.header.description,
        "frame_of_reference_uid": series.frame_of_reference, "accept_gaps": bool(accept_gaps),
        "frames": [{"file": str(Path(f.path).resolve()), "frame": f.number, "sop_instance_uid": f.sop_instance_uid}
                   for f in stack.frames],
        **dict(extra or {}),
    }
    write_into(files, path, json.dumps(data, indent=1) + "\n")
    return path


def read_series_file(path: Path) -> dict[str, Any]:
    """The parsed `.dcmseries`; StudyLoadError when it is not one or is damaged."""
    text = read_small_text(Path(path), "series file")  # a regular file of bounded size, never a pipe
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StudyLoadError(f"cannot read the series file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != SERIES_FILE_FORMAT or not data.get("frames"):
        raise StudyLoadError(f"{path} is not a BrainSeg DICOM series file")
    frames = data["frames"]
    if not isinstance(frames, list) or not all(isinstance(f, dict) and isinstance(f.get("file"), str) for f in frames):
        raise StudyLoadError(f"{path}: its frames are not a list of {{'file': ..., 'frame': ...}} entries")
    return data


def series_frames(data: Mapping[str, Any]) -> list[Any]:
    """The frames a series file names, re-read from the DICOM headers (positions as they are now)."""
    import pydicom

    from brainseg_gui.core.dicom_headers import frames_of

    wanted = {(entry["file"], entry.get("frame")) for entry in data["frames"]}
    frames = []
    for file in dict.fromkeys(entry["file"] for entry in data["frames"]):
        regular_file(Path(file), f"DICOM file of series {data.get('description')!r}")
        try:
            dataset = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types on damaged files
            raise StudyLoadError(f"cannot read {file} of series {data.get('description')!r}: {exc}") from exc
        if str(dataset.get("SeriesInstanceUID", "")) != data["series_uid"]:
            raise StudyLoadError(f"{file} no longer belongs to series {data['series_uid']}")
        frames += [f for f in frames_of(Path(file), dataset) if (str(f.path), f.number) in wanted]
    return frames


def series_grid(path: Path) -> Grid:
    """The grid a `.dcmseries` is read on, from the headers alone (no pixels are decoded)."""
    data = read_series_file(path)
    ordered, geometry = check_stack(series_frames(data))
    if geometry.regular or not data.get("accept_gaps") or geometry.spacing is None:
        return stack_grid(ordered)
    _, positions = _regular_positions(ordered, float(geometry.spacing))
    return stack_grid(ordered, positions)


def read_series_volume(path: Path) -> tuple[np.ndarray, Grid]:
    """`image_io.read_image` for a `.dcmseries`: the stack's volume and grid (warnings are logged)."""
    data = read_series_file(path)
    label = f"series {data.get('series_number') or ''} {data.get('description') or data['series_uid']}".strip()
    volume, grid, warnings = read_frames(series_frames(data), accept_gaps=bool(data.get("accept_gaps")), label=label)
    for warning in warnings:
        log.warning("%s", warning)
    return volume, grid


__all__ = [
    "GAP_FACTOR",
    "SERIES_FILE_SUFFIX",
    "GapsError",
    "read_frames",
    "read_series_file",
    "read_series_volume",
    "write_series_file",
]
