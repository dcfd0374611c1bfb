"""A study's result sent back as DICOM: a SEG on the reference series and an SR with the volumes.

The SEG (highdicom) joins the source study as a new series, references every instance (or, for an
enhanced multi-frame source, every frame) of the reference series and its frame of reference, and
holds one BINARY segment per region, WT, TC and ET (overlapping, as the regions are nested), with
the algorithm's name and version and the model version. The SR (TID 1500, `core/dicom_sr.py`)
gives each region's volume in mL and references the SEG's segments. Both are written into the
output folder as a set: each to a temporary name first, renamed only when both are complete.

Voxels are placed through the DICOM geometry of each source frame (position, orientation, pixel
spacing), never by an assumed order, so a grid built from the series maps back exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui import __version__
from brainseg_gui.core.atomic import FileSet, WriteError
from brainseg_gui.core.dicom_seg import plane_geometry
from brainseg_gui.core.dicom_volume import read_series_file, series_frames
from brainseg_gui.core.errors import BrainSegError, GridMismatchError
from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
from brainseg_gui.core.study import Grid

log = logging.getLogger(__name__)

REGION_SEGMENTS = {"WT": 1, "TC": 2, "ET": 3}
REGION_LABELS = {"WT": "Whole tumour (WT)", "TC": "Tumour core (TC)", "ET": "Enhancing tumour (ET)"}
#: SNOMED CT: every region is a neoplasm (morphologic abnormality); the label tells them apart,
#: as no SNOMED concept names the BraTS sub-regions.
NEOPLASM = ("108369006", "Neoplasm")


@dataclass(frozen=True)
class WrittenResults:
    """The files written for a study and what they hold."""

    seg: Path
    sr: Path
    volumes_ml: Mapping[str, float]
    series_uid: str
    report: Path | None = None  # the Encapsulated PDF, when asked for


def region_volumes_ml(labels: np.ndarray, convention: LabelConvention, grid: Grid) -> dict[str, float]:
    """Volume of each region (WT, TC, ET) in mL on `grid`."""
    regions = to_regions(labels, convention)
    return {name: float(regions[index].sum()) * grid.voxel_volume_ml for index, name in enumerate(REGIONS)}


def _frame_indices(frame: Any, grid: Grid, *, loose_k: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid voxel indices (i, j, k) of every pixel (row, column) of one source frame."""
    if frame.position is None or frame.orientation is None or frame.pixel_spacing is None:
        raise GridMismatchError(f"frame {frame.sop_instance_uid} ({frame.path.name}) has no position or spacing")
    return plane_geometry(frame.position, frame.orientation, frame.pixel_spacing, frame.rows, frame.columns, grid,
                          name=f"frame {frame.sop_instance_uid} ({frame.path.name})", loose_k=loose_k).indices()


def build_study_seg(labels: np.ndarray, convention: LabelConvention, grid: Grid, series_file: Path, *,
                    model_version: str | None, edited: bool = False, user: str = "unknown",
                    series_number: int | None = None) -> tuple[Any, list[Any]]:
    """The SEG of `labels` (on `grid`, the reference series' own grid) and the source datasets it references."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    data = read_series_file(series_file)
    frames = series_frames(data)
    if labels.shape != grid.shape:
        raise GridMismatchError(f"mask shape {labels.shape} is not the grid's {grid.shape}")
    regions = to_regions(labels, convention)
    sources: dict[Path, Any] = {}
    for frame in frames:
        if frame.path not in sources:
            sources[frame.path] = pydicom.dcmread(frame.path, stop_before_pixels=True)
    datasets = list(sources.values())
    multi = len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1
    loose = bool(data.get("accept_gaps"))
    if multi:
        count = int(datasets[0].NumberOfFrames)
        pixels = np.zeros((count, frames[0].rows, frames[0].columns, len(REGIONS)), dtype=bool)
        for frame in frames:
            where = _frame_indices(frame, grid, loose_k=loose)
            pixels[frame.number - 1] = np.moveaxis(regions[:, where[0], where[1], where[2]], 0, -1)
    else:
        by_path = {frame.path: frame for frame in frames}
        datasets = [sources[path] for path in by_path]  # frame order: along the slice normal
        pixels = np.zeros((len(datasets), frames[0].rows, frames[0].columns, len(REGIONS)), dtype=bool)
        for index, frame in enumerate(by_path.values()):
            where = _frame_indices(frame, grid, loose_k=loose)
            pixels[index] = np.moveaxis(regions[:, where[0], where[1], where[2]], 0, -1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="BrainSeg", family=codes.cid7162.ArtificialIntelligence, version=f"{__version__} model {model_version}")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=REGION_SEGMENTS[region], segment_label=REGION_LABELS[region],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=Code(NEOPLASM[0], "SCT", NEOPLASM[1]),
            algorithm_type="SEMIAUTOMATIC" if edited else "AUTOMATIC", algorithm_identification=algorithm,
            tracking_uid=hd.UID(), tracking_id=f"BrainSeg {region}",
            anatomic_regions=[codes.SCT.Brain])
        for region in REGIONS
    ]
    source_number = int(datasets[0].get("SeriesNumber", 0) or 0)
    if multi:
        _share_frame_geometry(datasets[0])
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(),
        series_number=series_number if series_number is not None else source_number + 1000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="BrainSeg (research use only)",
        manufacturer_model_name="BrainSeg", software_versions=__version__, device_serial_number="none",
        content_description=f"Tumour regions, model {model_version or 'none'}"[:64],
        content_creator_name=("".join(ch for ch in user if ch not in "^=\\")[:63] or "unknown") + "^",
        content_label="TUMOUR", series_description="BrainSeg tumour segmentation", omit_empty_frames=False,
    )
    return seg, datasets


def _share_frame_geometry(dataset: Any) -> None:
    """Copy per-frame pixel measures and orientation into the shared groups of a header held in memory.

    Real enhanced files (Siemens XA) keep them per frame; highdicom reads them from the shared
    groups only. They are equal on every frame of one stack (the stack grouping checked that).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    if "SharedFunctionalGroupsSequence" not in dataset or not dataset.SharedFunctionalGroupsSequence:
        dataset.SharedFunctionalGroupsSequence = DicomSequence([Dataset()])
    shared = dataset.SharedFunctionalGroupsSequence[0]
    first = dataset.PerFrameFunctionalGroupsSequence[0]
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if keyword not in shared and keyword in first:
            setattr(shared, keyword, first[keyword].value)


def read_study_seg(path: Path, grid: Grid, series_file: Path) -> np.ndarray:
    """A SEG written by `build_study_seg` back onto `grid` as (3, i, j, k) region masks (for checks)."""
    import highdicom as hd

    data = read_series_file(series_file)
    frames = series_frames(data)
    seg = hd.seg.segread(str(path))
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence]
    regions = np.zeros((len(REGIONS), *grid.shape), dtype=bool)
    loose = bool(data.get("accept_gaps"))
    by_uid: dict[str, list[Any]] = {}
    for frame in frames:
        by_uid.setdefault(frame.sop_instance_uid, []).append(frame)
    for uid, members in by_uid.items():
        if members[0].number is None:
            array = seg.get_pixels_by_source_instance([uid], segment_numbers=numbers)[0]
            pairs = [(members[0], array)]
        else:
            numbers_of = [f.number for f in members]
            stack = seg.get_pixels_by_source_frame(uid, numbers_of, segment_numbers=numbers)
            pairs = list(zip(members, stack))
        for frame, pixels in pairs:
            where = _frame_indices(frame, grid, loose_k=loose)
            for index, number in enumerate(numbers):
                regions[REGIONS.index(_region_of(seg, number)), where[0], where[1], where[2]] = pixels[..., index] > 0
    return regions


def _region_of(seg: Any, number: int) -> str:
    label = str(next(item.SegmentLabel for item in seg.SegmentSequence if int(item.SegmentNumber) == number))
    for region, text in REGION_LABELS.items():
        if text == label:
            return region
    raise BrainSegError(f"segment {number} ({label!r}) is not a BrainSeg region")


def write_study_results(out_dir: Path, labels: np.ndarray, convention: LabelConvention, grid: Grid,
                        series_file: Path, *, model_version: str | None, edited: bool = False, user: str = "unknown",
                        flags: Sequence[str] = (), name: str = "brainseg", with_report: bool = False) -> WrittenResults:
    """Write `<name>_seg.dcm` and `<name>_sr.dcm` (and `with_report`, `<name>_report.dcm`, the report as
    an Encapsulated PDF) into `out_dir` as a set (never beside the study's files)."""
    from brainseg_gui.core.dicom_sr import build_volume_report, write_volume_report

    out_dir = Path(out_dir)
    seg, sources = build_study_seg(labels, convention, grid, series_file, model_version=model_version,
                                   edited=edited, user=user)
    volumes = region_volumes_ml(labels, convention, grid)
    volume_report = build_volume_report(seg, {REGION_SEGMENTS[r]: v for r, v in volumes.items()}, source_images=sources,
                                 model_version=str(model_version), flags=list(flags),
                                 series_number=int(seg.SeriesNumber) + 1)
    targets = [out_dir / f"{name}_seg.dcm", out_dir / f"{name}_sr.dcm", out_dir / f"{name}_report.dcm"]
    document = _report_document(labels, convention, grid, series_file, sources, volumes, flags, model_version,
                                series_number=int(seg.SeriesNumber) + 2) if with_report else None
    try:
        with FileSet() as files:
            files.add(targets[0], lambda temporary: seg.save_as(temporary, enforce_file_format=True))
            write_volume_report(targets[1], volume_report, files=files)
            if document is not None:
                files.add(targets[2], lambda temporary: document.save_as(temporary, enforce_file_format=True))
    except WriteError as exc:
        raise BrainSegError(f"cannot write the DICOM results into {out_dir}: {exc}") from exc
    log.info("wrote %s and %s (series %s)", targets[0], targets[1], seg.SeriesInstanceUID)
    return WrittenResults(targets[0], targets[1], volumes, str(seg.SeriesInstanceUID),
                          targets[2] if document is not None else None)


def _report_document(labels: np.ndarray, convention: LabelConvention, grid: Grid, series_file: Path,
                     sources: Sequence[Any], volumes: Mapping[str, float], flags: Sequence[str],
                     model_version: str | None, *, series_number: int) -> Any:
    """The one-page report (core/report_pdf.py) on the reference series, as an Encapsulated PDF."""
    from brainseg_gui.core.image_io import read_image
    from brainseg_gui.core.key_slices import overview_rgb
    from brainseg_gui.core.labels import convert
    from brainseg_gui.core.report_pdf import encapsulated_pdf, report_pdf

    image, image_grid = read_image(series_file)
    if image_grid.shape != grid.shape:
        raise GridMismatchError(f"the labels {grid.shape} do not fit the series {image_grid.shape} of {series_file}")
    source = sources[0]
    picture = overview_rgb(image, grid, convert(labels, convention, LabelConvention.BRATS))
    facts = [("Patient", f"{source.get('PatientName', '')} (ID {source.get('PatientID', '')})"),
             ("Study", f"{source.get('StudyDate', '')} {source.get('StudyDescription', '')}".strip()),
             ("Accession", str(source.get("AccessionNumber", ""))),
             ("Reference series", f"{source.get('SeriesNumber', '')} {source.get('SeriesDescription', '')}".strip()),
             ("Model", f"BrainSeg {__version__}, model {model_version}")]
    title = "BrainSeg tumour segmentation report"
    pdf = report_pdf(title, facts, volumes, flags, picture)
    return encapsulated_pdf(pdf, source, title=title, series_number=series_number)


def results_summary(results: WrittenResults) -> Mapping[str, Any]:
    return {"seg": str(results.seg), "sr": str(results.sr), "series_uid": results.series_uid,
            "volumes_ml": {k: round(v, 3) for k, v in results.volumes_ml.items()},
            **({"report": str(results.report)} if results.report is not None else {})}
