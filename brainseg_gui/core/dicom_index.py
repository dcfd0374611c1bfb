"""Index a DICOM study as it comes from PACS or a CD: every file once, header only, grouped.

`index_dicom(path)` accepts a folder tree (files at any depth, with or without `.dcm`), a `.zip`
of one (`core/dicom_sources.py` unpacks it, bounded), a DICOMDIR, or one file of a study. Each
DICOM file is read once with pydicom, `stop_before_pixels=True` (pixel data is read later, and
only for the series that are used). Files are grouped by study, series and, where one series
holds several image stacks (a 3-plane localizer, two echoes, several b-values), by stack.

Classic single-frame MR and Enhanced (multi-frame) MR are read through one model
(`core/dicom_headers.py`): a `DicomFrame` is one 2D image, a whole file or one frame of a
multi-frame file, with its own position.
Geometry is checked per stack (`core/dicom_geometry.py`) and reported, never silently fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainseg_gui.core.dicom_geometry import StackGeometry, check_stack, plane_of
from brainseg_gui.core.dicom_headers import DicomFrame, SeriesHeader, frames_of, int_value, series_header
from brainseg_gui.core.dicom_sources import DicomFiles, list_dicom_files
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress

log = logging.getLogger(__name__)

#: SOP classes holding MR images BrainSeg can build volumes from.
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
MR_IMAGE_CLASSES = (MR_IMAGE, ENHANCED_MR_IMAGE)
#: Secondary capture classes (screen captures, coloured maps exported as pictures).
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
#: Orientation cosines closer than this are the same orientation (stack grouping).
ORIENTATION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class DicomStack:
    """Frames of one series that share orientation, size, spacing, echo and b-value: one volume, maybe."""

    frames: tuple[DicomFrame, ...]
    geometry: StackGeometry

    @property
    def slices(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class DicomSeries:
    """One series of a study: its header evidence and its stacks (largest first)."""

    uid: str
    study_uid: str
    header: SeriesHeader
    stacks: tuple[DicomStack, ...]
    files: int
    frame_of_reference: str = ""

    @property
    def main_stack(self) -> DicomStack | None:
        return self.stacks[0] if self.stacks else None

    @property
    def frames(self) -> int:
        return sum(stack.slices for stack in self.stacks)

    @property
    def label(self) -> str:
        """How a user recognises the series: '7 Ax T2 FLAIR'."""
        number = "" if self.header.series_number is None else f"{self.header.series_number} "
        return f"{number}{self.header.description or self.header.protocol or '(no description)'}"

    def summary(self) -> dict[str, Any]:
        """The per-series facts a radiologist checks: description, vendor, plane, 2D/3D, grid, timing."""
        header, stack = self.header, self.main_stack
        geometry = stack.geometry if stack is not None else None
        return {
            "series_uid": self.uid, "series_number": header.series_number, "description": header.description,
            "protocol": header.protocol, "vendor": " ".join(p for p in (header.manufacturer, header.model) if p),
            "modality": header.modality, "sop_class": header.sop_class_uid,
            "plane": plane_of(stack.frames[0].orientation) if stack and stack.frames[0].orientation else None,
            "acquisition": header.acquisition_type or None, "files": self.files, "frames": self.frames,
            "stacks": len(self.stacks), "slices": stack.slices if stack else 0,
            "pixel_spacing_mm": list(stack.frames[0].pixel_spacing) if stack and stack.frames[0].pixel_spacing
            else None,
            "slice_spacing_mm": geometry.spacing if geometry else None,
            "slice_thickness_mm": stack.frames[0].slice_thickness if stack else None,
            "matrix": [stack.frames[0].columns, stack.frames[0].rows] if stack else None,
            "contrast_agent": header.contrast_agent or None,
            "tr_ms": header.repetition_time, "te_ms": header.echo_time, "ti_ms": header.inversion_time,
            "flip_deg": header.flip_angle, "sequence_name": header.sequence_name or None,
            "scanning_sequence": header.scanning_sequence or None, "image_type": list(header.image_type),
            "transfer_syntax": header.transfer_syntax, "time": header.time or None,
            "geometry_problems": list(self.geometry_problems()),
            "gaps": list(geometry.gaps) if geometry else [],
        }

    def geometry_problems(self) -> tuple[str, ...]:
        """Missing slices, uneven spacing, duplicates of the main stack; mixed orientations of the series."""
        problems: list[str] = []
        if self.main_stack is not None:
            problems += self.main_stack.geometry.problems
        planes = {plane_of(s.frames[0].orientation) for s in self.stacks if s.frames[0].orientation}
        if len(planes) > 1:
            problems.append(f"mixed orientations in one series ({', '.join(sorted(planes))})")
        return tuple(problems)


@dataclass(frozen=True)
class DicomStudy:
    """One study (StudyInstanceUID) and its series, in series-number order."""

    uid: str
    patient_id: str
    patient_name: str
    date: str
    description: str
    accession: str
    series: tuple[DicomSeries, ...]

    @property
    def label(self) -> str:
        parts = [self.patient_id or self.patient_name, self.date, self.description or self.accession]
        return " ".join(part for part in parts if part) or self.uid

    def series_by(self, key: str) -> DicomSeries:
        """A series by SeriesInstanceUID or series number (as a user types it)."""
        for series in self.series:
            if series.uid == key:
                return series
        numbered = [s for s in self.series if s.header.series_number is not None and str(s.header.series_number) == key]
        if len(numbered) == 1:
            return numbered[0]
        if len(numbered) > 1:
            raise StudyLoadError(f"series number {key} names {len(numbered)} series of study {self.label}; "
                                 f"give the SeriesInstanceUID ({', '.join(s.uid for s in numbered)})")
        raise StudyLoadError(f"study {self.label} has no series {key!r} (series: "
                             f"{', '.join(str(s.header.series_number) for s in self.series)})")


@dataclass(frozen=True)
class DicomIndex:
    """Everything found under a path: studies, and the files skipped with why."""

    root: Path
    studies: tuple[DicomStudy, ...]
    skipped: tuple[tuple[Path, str], ...] = ()
    duplicates: int = 0
    notes: tuple[str, ...] = field(default=())

    def study(self, uid: str | None = None) -> DicomStudy:
        """The one study, or the one whose StudyInstanceUID (or a unique prefix of it) is `uid`."""
        if uid is None:
            if len(self.studies) == 1:
                return self.studies[0]
            listing = "; ".join(f"{s.uid} ({s.label}, {len(s.series)} series)" for s in self.studies)
            raise StudyLoadError(f"{self.root} holds {len(self.studies)} DICOM studies: {listing}. "
                                 "Choose one with --study UID")
        matches = [s for s in self.studies if s.uid == uid] or [s for s in self.studies if s.uid.startswith(uid)]
        if len(matches) != 1:
            raise StudyLoadError(f"{self.root}: no single study matches --study {uid} (studies: "
                                 f"{', '.join(s.uid for s in self.studies)})")
        return matches[0]


def index_dicom(path: Path | str, *, progress: ProgressFn = no_progress,
                cancel: CancelToken | None = None) -> DicomIndex:
    """Index every DICOM file under `path` (folder, zip, DICOMDIR or one file); headers only.

    Raises StudyLoadError when nothing readable is found (naming what was looked at). Files that
    are not DICOM are ignored; DICOM files that cannot be parsed are skipped and listed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    source: DicomFiles = list_dicom_files(Path(path), progress=progress, cancel=cancel)
    skipped = list(source.skipped)
    by_series: dict[tuple[str, str], list[tuple[Path, Any]]] = {}
    seen: set[str] = set()
    duplicates = 0
    total = max(len(source.files), 1)
    for count, file in enumerate(source.files):
        if cancel is not None and count % 64 == 0:
            cancel.raise_if_cancelled()
        if count % 100 == 0:
            progress(0.1 + 0.8 * count / total, f"reading headers ({count} of {len(source.files)} files)")
        try:
            dataset = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as exc:
            skipped.append((file, f"not a readable DICOM file ({_short(exc)})"))
            continue
        sop_class = str(dataset.get("SOPClassUID", ""))
        if sop_class == "1.2.840.10008.1.3.10":  # a DICOMDIR found while walking: not an image
            continue
        sop_uid = str(dataset.get("SOPInstanceUID", ""))
        if sop_uid and sop_uid in seen:
            duplicates += 1  # the same instance twice (a copy, or a re-encoded twin): keep the first
            continue
        seen.add(sop_uid)
        key = (str(dataset.get("StudyInstanceUID", "")), str(dataset.get("SeriesInstanceUID", "")))
        if not key[1]:
            skipped.append((file, "no SeriesInstanceUID"))
            continue
        by_series.setdefault(key, []).append((file, dataset))
    if not by_series:
        detail = f"; {len(skipped)} damaged file(s), e.g. {skipped[0][0].name}: {skipped[0][1]}" if skipped else ""
        raise StudyLoadError(f"{path} holds no DICOM images (looked at {source.looked_at} file(s){detail})")
    progress(0.9, "grouping series")
    studies: dict[str, list[DicomSeries]] = {}
    first: dict[str, Any] = {}
    for (study_uid, series_uid), members in by_series.items():
        series = _series(study_uid, series_uid, members, skipped)
        if series is not None:
            studies.setdefault(study_uid, []).append(series)
            first.setdefault(study_uid, members[0][1])
    built = tuple(sorted((_study(uid, series, first[uid]) for uid, series in studies.items()),
                         key=lambda s: (s.date, s.uid)))
    if duplicates:
        log.info("%s: %d duplicate instance(s) (same SOPInstanceUID) ignored", path, duplicates)
    progress(1.0, f"indexed {sum(len(s.series) for s in built)} series in {len(built)} study(ies)")
    return DicomIndex(Path(path), built, tuple(skipped), duplicates, source.notes)


# -- grouping --------------------------------------------------------------------------------------


def _series(study_uid: str, series_uid: str, members: list[tuple[Path, Any]],
            skipped: list[tuple[Path, str]]) -> DicomSeries | None:
    members.sort(key=lambda m: (int_value(m[1].get("InstanceNumber")) or 0, str(m[0])))
    # A series may mix SOP classes (an MR series and a Raw Data object sharing its UID): the images win.
    images = [(p, d) for p, d in members if "PixelData" in d or "Rows" in d]
    header_source = images[0][1] if images else members[0][1]
    frames: list[DicomFrame] = []
    for file, dataset in images:
        try:
            frames.extend(frames_of(file, dataset))
        except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
            skipped.append((file, f"unreadable image geometry ({_short(exc)})"))
    header = series_header(header_source)
    return DicomSeries(series_uid, study_uid, header, _stacks(frames), files=len(members),
                       frame_of_reference=str(header_source.get("FrameOfReferenceUID", "")))


def _study(uid: str, series: list[DicomSeries], dataset: Any) -> DicomStudy:
    series.sort(key=lambda s: (s.header.series_number if s.header.series_number is not None else 1 << 30, s.uid))
    return DicomStudy(uid=uid, patient_id=str(dataset.get("PatientID", "")),
                      patient_name=str(dataset.get("PatientName", "")), date=str(dataset.get("StudyDate", "")),
                      description=str(dataset.get("StudyDescription", "")),
                      accession=str(dataset.get("AccessionNumber", "")), series=tuple(series))


def _stacks(frames: Sequence[DicomFrame]) -> tuple[DicomStack, ...]:
    groups: dict[tuple[Any, ...], list[DicomFrame]] = {}
    for frame in frames:
        orientation = None if frame.orientation is None else tuple(round(v / ORIENTATION_TOLERANCE)
                                                                   for v in frame.orientation)
        spacing = None if frame.pixel_spacing is None else tuple(round(v, 4) for v in frame.pixel_spacing)
        key = (orientation, frame.rows, frame.columns, spacing, frame.echo_number, frame.b_value)
        groups.setdefault(key, []).append(frame)
    stacks = [DicomStack(*check_stack(group)) for group in groups.values()]
    return tuple(sorted(stacks, key=lambda s: -s.slices))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


__all__ = [
    "MR_IMAGE_CLASSES",
    "SECONDARY_CAPTURE_PREFIX",
    "DicomFrame",
    "DicomIndex",
    "DicomSeries",
    "DicomStack",
    "DicomStudy",
    "SeriesHeader",
    "index_dicom",
    
]
