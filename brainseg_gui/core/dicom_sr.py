"""DICOM SR (TID 1500 Measurement Report) of tumour volumes measured on a DICOM-SEG.

A PACS shows a SEG as an overlay but cannot read numbers out of it; this Comprehensive 3D SR puts the
volume (mL) of each segment next to it, in the same study, as a standard measurement report: one
TID 1411 "Volumetric ROI Measurements" group per segment, each tracking the segment by its label and
referencing the SEG instance, the segment number and the series it was segmented from. Caveats about
how the segmentation was made (a missing sequence, rebuilt slices) go in the report's "Qualitative
Evaluations" container as free text, so a reader of the numbers sees them.

highdicom and pydicom are imported inside the functions: the CLI imports this module and stays fast.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainseg_gui import __version__
from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.errors import BrainSegError

if TYPE_CHECKING:
    import highdicom
    import pydicom

log = logging.getLogger(__name__)

MANUFACTURER = "BrainSeg (research use only)"
SERIES_DESCRIPTION = "BrainSeg tumour volumes"
#: SOP classes of a segmentation a "Referenced Segment" may point at (Segmentation, Label Map Segmentation).
SEGMENTATION_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
#: UCUM millilitre (CID 7462 "Units of Measure for Volume"); pydicom's codedict has no plain "ml" entry.
MILLILITRE = ("ml", "UCUM", "milliliter")
#: TID 1500 row 12: the container of report-level qualitative evaluations, and the TEXT items it holds.
QUALITATIVE_EVALUATIONS = ("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = ("121106", "DCM", "Comment")


def build_volume_report(seg: pydicom.Dataset, volumes_ml: Mapping[int, float], *,
                        source_images: Sequence[pydicom.Dataset], model_version: str,
                        flags: Sequence[str] = (), series_number: int = 2000) -> highdicom.sr.Comprehensive3DSR:
    """A Comprehensive 3D SR, in the SEG's study, reporting `volumes_ml[segment number]` per segment.

    `source_images` are the instances the SEG was made from (headers are enough); `flags` are caveats
    written into the report as text.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    seg_uid = str(getattr(seg, "SOPInstanceUID", "?"))
    segments = _segments(seg)
    volumes = _volumes(seg_uid, segments, volumes_ml)
    sources = _sources(seg, source_images)
    model_version = model_version or "none"
    flags = [str(flag).strip() for flag in ([flags] if isinstance(flags, str) else flags)]
    flags = [flag for flag in flags if flag]

    series_uids = list(dict.fromkeys(str(image.SeriesInstanceUID) for image in sources))
    algorithm = hd.sr.AlgorithmIdentification(name="BrainSeg", version=model_version,
                                              manufacturer=MANUFACTURER)
    groups = []
    for number, item in segments.items():
        if len(series_uids) == 1:
            reference = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(series_uids[0]))
        else:
            reference = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
                source_images=[hd.sr.SourceImageForSegmentation.from_source_image(image) for image in sources])
        volume = hd.sr.Measurement(name=codes.SCT.Volume, value=volumes[number], unit=Code(*MILLILITRE))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=_label(item, number)),
            referenced_segment=reference,
            finding_category=_code(item, "SegmentedPropertyCategoryCodeSequence"),
            finding_type=_code(item, "SegmentedPropertyTypeCodeSequence"),
            algorithm_id=algorithm,
            measurements=[volume],
        ))

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_device_uid(model_version), name=f"BrainSeg {__version__}", manufacturer_name=MANUFACTURER,
        model_name=f"BrainSeg model {model_version}")
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                                      observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.LN.BrainMRI,
                                     imaging_measurements=groups)
    if flags:
        report[0].ContentSequence.append(_flags_container(flags))

    seg_study = str(seg.StudyInstanceUID)
    evidence = [seg, *sources]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="BrainSeg",
        software_versions=__version__,
        series_description=SERIES_DESCRIPTION,
        is_complete=True,
        # Made by an algorithm and not verified by a person: PRELIMINARY (and UNVERIFIED, the default).
        is_final=False,
    )
    if str(sr.StudyInstanceUID) != seg_study:  # highdicom takes the study from evidence[0], the SEG
        raise BrainSegError(f"SR for SEG {seg_uid} came out in study {sr.StudyInstanceUID}, not {seg_study}")
    log.info("built volume SR %s for SEG %s: %s", sr.SOPInstanceUID, seg_uid,
             ", ".join(f"{number}={volumes[number]:.3f} ml" for number in segments))
    return sr


def write_volume_report(path: Path, report: Any, *, files: FileSet | None = None) -> Path:
    """Write `report` (a DICOM dataset) to `path` all-or-nothing; with `files`, as part of that set."""
    import pydicom

    path = Path(path)
    if not isinstance(report, pydicom.Dataset):
        raise BrainSegError(f"cannot write {path}: the report is a {type(report).__name__}, not a DICOM dataset")
    try:
        write_into(files, path, lambda temporary: report.save_as(temporary, enforce_file_format=True))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise BrainSegError(f"cannot write DICOM SR {path}: {exc}") from exc
    log.info("wrote DICOM SR %s", path)
    return path


def _segments(seg: pydicom.Dataset) -> dict[int, pydicom.Dataset]:
    """The SEG's segment descriptions by segment number, in order (checks it is a segmentation)."""
    uid = getattr(seg, "SOPInstanceUID", "?")
    sop_class = str(getattr(seg, "SOPClassUID", ""))
    if sop_class not in SEGMENTATION_SOP_CLASSES:
        raise BrainSegError(f"SEG {uid} has SOP class {sop_class or 'none'!r}, not a DICOM Segmentation")
    items = list(getattr(seg, "SegmentSequence", None) or [])
    if not items:
        raise BrainSegError(f"SEG {uid} has no segments (empty SegmentSequence): nothing to report")
    segments: dict[int, Any] = {}
    for item in items:
        number = int(item.SegmentNumber)
        if number in segments:
            raise BrainSegError(f"SEG {uid} describes segment number {number} twice")
        segments[number] = item
    return dict(sorted(segments.items()))


def _volumes(seg_uid: str, segments: Mapping[int, Any], volumes_ml: Mapping[int, float]) -> dict[int, float]:
    """`volumes_ml` checked against the segments: one finite, non-negative volume for each, no other."""
    volumes: dict[int, float] = {}
    for key, value in volumes_ml.items():
        try:
            if isinstance(key, bool):
                raise TypeError
            number = operator.index(key)
        except TypeError:
            raise BrainSegError(f"volume key {key!r} for SEG {seg_uid} is not a segment number") from None
        if number not in segments:
            raise BrainSegError(f"volume given for segment {number}, but SEG {seg_uid} has segments "
                                f"{sorted(segments)}")
        try:
            volume = float(value)
        except (TypeError, ValueError):
            raise BrainSegError(f"volume {value!r} of segment {number} is not a number") from None
        if not math.isfinite(volume) or volume < 0:
            raise BrainSegError(f"volume {value!r} mL of segment {number} is not a finite, non-negative number")
        volumes[number] = volume
    missing = [number for number in segments if number not in volumes]
    if missing:
        raise BrainSegError(f"no volume given for segment(s) {missing} of SEG {seg_uid} "
                            f"({', '.join(repr(_label(segments[n], n)) for n in missing)})")
    return volumes


def _sources(seg: pydicom.Dataset, source_images: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The source images, once each, checked to be in the SEG's study and among the series it references."""
    seg_uid, seg_study = seg.SOPInstanceUID, str(seg.StudyInstanceUID)
    sources = list({str(image.SOPInstanceUID): image for image in source_images}.values())
    if not sources:
        raise BrainSegError(f"no source images given for SEG {seg_uid}: the report must name what was segmented")
    for image in sources:
        if str(image.StudyInstanceUID) != seg_study:
            raise BrainSegError(f"source image {image.SOPInstanceUID} is in study {image.StudyInstanceUID}, "
                                f"but SEG {seg_uid} is in study {seg_study}")
    referenced = {str(item.SeriesInstanceUID) for item in getattr(seg, "ReferencedSeriesSequence", None) or []}
    if referenced:
        stray = sorted({str(image.SeriesInstanceUID) for image in sources} - referenced)
        if stray:
            raise BrainSegError(f"SEG {seg_uid} was made from series {sorted(referenced)}, not from the "
                                f"source series {stray}")
    return sources


def _label(item: Any, number: int) -> str:
    return str(getattr(item, "SegmentLabel", "") or f"Segment {number}")


def _code(item: Any, keyword: str) -> highdicom.sr.CodedConcept | None:
    """The first code of a segment description's code sequence (e.g. its property type), if any."""
    import highdicom as hd

    sequence = getattr(item, keyword, None)
    return hd.sr.CodedConcept.from_dataset(sequence[0]) if sequence else None


def _device_uid(model_version: str) -> str:
    """A UID that names this software and model (the same for every report the same model makes)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None, entropy_srcs=["BrainSeg", __version__, model_version]))


def _flags_container(flags: Sequence[str]) -> highdicom.sr.ContainerContentItem:
    """TID 1500 row 12 "Qualitative Evaluations": one TEXT item per flag.

    The flags are free text with no code in any coding scheme, so they cannot be highdicom
    `QualitativeEvaluation`s (CODE items, inside each group); TID 1500 allows TEXT evaluations in this
    report-level container (rows 12-14), which holds them once for the whole report.
    """
    import highdicom as hd

    container = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept(*QUALITATIVE_EVALUATIONS),
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
                                           is_content_continuous=False)  # SEPARATE: independent items
    container.ContentSequence = hd.sr.ContentSequence([
        hd.sr.TextContentItem(name=hd.sr.CodedConcept(*COMMENT), value=str(flag),
                              relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        for flag in flags
    ])
    return container


def build_failure_report(source_images: Sequence[pydicom.Dataset], reason: str, *,
                         series_number: int = 2000) -> highdicom.sr.Comprehensive3DSR:
    """An SR in the study of `source_images` saying BrainSeg did not segment it, and why.

    A "Diagnostic imaging report" (LOINC 18748-4) observed by the BrainSeg device, holding the reason as
    one TEXT comment, so a PACS shows it beside the study that was sent for segmentation. Not TID 1500:
    that template needs measurements, and there are none.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_device_uid("none"), name=f"BrainSeg {__version__}", manufacturer_name=MANUFACTURER,
        model_name="BrainSeg")
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                                      observer_identifying_attributes=device))
    report = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"),
                                        is_content_continuous=False)
    report.ContentSequence = hd.sr.ContentSequence([
        *context,
        hd.sr.TextContentItem(name=hd.sr.CodedConcept(*COMMENT), value=f"BrainSeg did not segment this study: {reason}",
                              relationship_type=hd.sr.RelationshipTypeValues.CONTAINS),
    ], is_root=False)
    return hd.sr.Comprehensive3DSR(
        evidence=list(source_images), content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="BrainSeg",
        software_versions=__version__, series_description="BrainSeg: not segmented", is_complete=True,
        is_final=False)
