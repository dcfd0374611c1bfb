"""What one DICOM MR file says: its 2D images (frames) with their geometry, and its header evidence.

Classic single-frame MR keeps everything at the top level; Enhanced (multi-frame) MR keeps per-frame
values (position, orientation, pixel spacing, b-value) in the per-frame functional groups and common
ones (TR, TE, TI, frame type) in the shared groups, either of which a vendor may use: `_FrameGroups`
looks in the frame's own groups first, then in the shared ones. Values are read forgivingly (a
missing or malformed number is None), since the index must survive any scanner's header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DicomFrame:
    """One 2D image: a single-frame file (`number` None) or frame `number` (1-based) of a multi-frame file."""

    path: Path
    number: int | None
    sop_instance_uid: str
    position: tuple[float, ...] | None  # 3 values (LPS mm)
    orientation: tuple[float, ...] | None  # 6 direction cosines: a row, then a column
    pixel_spacing: tuple[float, ...] | None  # 2 values: between rows, between columns
    rows: int
    columns: int
    slice_thickness: float | None = None
    echo_number: int | None = None
    b_value: float | None = None
    instance_number: int | None = None


@dataclass(frozen=True)
class SeriesHeader:
    """The header evidence of a series, as read from its first image (enhanced: from the functional groups)."""

    modality: str = ""
    sop_class_uid: str = ""
    description: str = ""
    protocol: str = ""
    sequence_name: str = ""
    scanning_sequence: str = ""
    sequence_variant: str = ""
    scan_options: str = ""
    acquisition_type: str = ""
    repetition_time: float | None = None
    echo_time: float | None = None
    inversion_time: float | None = None
    flip_angle: float | None = None
    contrast_agent: str = ""
    image_type: tuple[str, ...] = ()
    manufacturer: str = ""
    model: str = ""
    series_number: int | None = None
    time: str = ""
    photometric: str = ""
    samples_per_pixel: int = 1
    body_part: str = ""
    transfer_syntax: str = ""

    @property
    def text(self) -> str:
        """Description and protocol together, for keyword rules."""
        return " ".join(part for part in (self.description, self.protocol) if part)


class _FrameGroups:
    """Values of an enhanced multi-frame file: per-frame functional groups first, then shared ones."""

    def __init__(self, dataset: Any) -> None:
        shared = dataset.get("SharedFunctionalGroupsSequence")
        self.shared = shared[0] if shared else None
        self.per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []

    def value(self, index: int | None, sequence: str, keyword: str) -> Any:
        groups = ([self.per_frame[index]] if index is not None and index < len(self.per_frame) else []) + \
            ([self.shared] if self.shared is not None else [])
        for group in groups:
            items = group.get(sequence)
            if items:
                value = items[0].get(keyword)
                if value is not None and value != "":
                    return value
        return None


def frames_of(path: Path, dataset: Any) -> list[DicomFrame]:
    """The 2D images of one file: itself, or each frame of an enhanced multi-frame file."""
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    count = int_value(dataset.get("NumberOfFrames")) or 1
    uid = str(dataset.get("SOPInstanceUID", ""))
    if "PerFrameFunctionalGroupsSequence" not in dataset and "SharedFunctionalGroupsSequence" not in dataset:
        return [DicomFrame(path, None if count == 1 else 1, uid, _floats(dataset.get("ImagePositionPatient"), 3),
                           _floats(dataset.get("ImageOrientationPatient"), 6),
                           _floats(dataset.get("PixelSpacing"), 2), rows, columns,
                           _float(dataset.get("SliceThickness")), int_value(dataset.get("EchoNumbers")),
                           _b_value(dataset), int_value(dataset.get("InstanceNumber")))]
    groups = _FrameGroups(dataset)
    frames = []
    for index in range(count):
        frames.append(DicomFrame(
            path, index + 1, uid,
            _floats(groups.value(index, "PlanePositionSequence", "ImagePositionPatient"), 3),
            _floats(groups.value(index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            _floats(groups.value(index, "PixelMeasuresSequence", "PixelSpacing"), 2), rows, columns,
            _float(groups.value(index, "PixelMeasuresSequence", "SliceThickness")),
            None, _float(groups.value(index, "MRDiffusionSequence", "DiffusionBValue")), index + 1))
    return frames


def series_header(dataset: Any) -> SeriesHeader:
    """The header evidence of a series from one of its images (enhanced: the first frame's groups)."""
    groups = _FrameGroups(dataset) if "SharedFunctionalGroupsSequence" in dataset else None

    def grouped(sequence: str, keyword: str) -> Any:
        return groups.value(0, sequence, keyword) if groups is not None else None

    image_type = dataset.get("ImageType") or grouped("MRImageFrameTypeSequence", "FrameType") or ()
    frame_type = grouped("MRImageFrameTypeSequence", "FrameType")
    if frame_type:  # enhanced: the frame type says what the frames are (ADC, DIFFUSION, ...)
        image_type = tuple(dict.fromkeys([*(str(v) for v in frame_type), *(str(v) for v in image_type)]))
    inversion = _float(dataset.get("InversionTime"))
    if inversion is None:
        inversion = _float(grouped("MRModifierSequence", "InversionTimes"))
    agent = str(dataset.get("ContrastBolusAgent", "") or "")
    if not agent and dataset.get("ContrastBolusAgentSequence"):
        item = dataset.ContrastBolusAgentSequence[0]
        agent = str(item.get("CodeMeaning", "") or "contrast agent (coded)")
    file_meta = getattr(dataset, "file_meta", None)
    return SeriesHeader(
        modality=str(dataset.get("Modality", "")), sop_class_uid=str(dataset.get("SOPClassUID", "")),
        description=str(dataset.get("SeriesDescription", "") or ""), protocol=str(dataset.get("ProtocolName", "") or ""),
        sequence_name=str(dataset.get("SequenceName", "") or dataset.get("PulseSequenceName", "") or ""),
        scanning_sequence=_joined(dataset.get("ScanningSequence")),
        sequence_variant=_joined(dataset.get("SequenceVariant")), scan_options=_joined(dataset.get("ScanOptions")),
        acquisition_type=str(dataset.get("MRAcquisitionType", "") or ""),
        repetition_time=_float(dataset.get("RepetitionTime"))
        or _float(grouped("MRTimingAndRelatedParametersSequence", "RepetitionTime")),
        echo_time=_float(dataset.get("EchoTime")) or _float(grouped("MREchoSequence", "EffectiveEchoTime")),
        inversion_time=inversion,
        flip_angle=_float(dataset.get("FlipAngle")) or _float(grouped("MRTimingAndRelatedParametersSequence",
                                                                      "FlipAngle")),
        contrast_agent=agent.strip(), image_type=tuple(str(v).upper() for v in image_type),
        manufacturer=str(dataset.get("Manufacturer", "") or ""),
        model=str(dataset.get("ManufacturerModelName", "") or ""), series_number=int_value(dataset.get("SeriesNumber")),
        time=str(dataset.get("AcquisitionTime", "") or dataset.get("SeriesTime", "") or ""),
        photometric=str(dataset.get("PhotometricInterpretation", "") or ""),
        samples_per_pixel=int_value(dataset.get("SamplesPerPixel")) or 1,
        body_part=str(dataset.get("BodyPartExamined", "") or ""),
        transfer_syntax=str(getattr(file_meta, "TransferSyntaxUID", "") or ""),
    )


# -- small readers ------------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)
                                             and not hasattr(value, "real")):
        value = list(value)
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def int_value(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _floats(value: Any, count: int) -> tuple[float, ...] | None:  # type: ignore[return]
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def _joined(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return "\\".join(str(v) for v in value)
    except TypeError:
        return str(value)


def _b_value(dataset: Any) -> float | None:
    for keyword in ("DiffusionBValue",):
        value = _float(dataset.get(keyword))
        if value is not None:
            return value
    ge = dataset.get((0x0043, 0x1039))  # GE keeps the b-value in a private slop integer
    if ge is not None:
        value = _float(ge.value)
        if value is not None:
            return value % 1_000_000_000 if value >= 1_000_000_000 else value
    return None
