"""DICOM-SEG export (highdicom) of a corrected mask for a study read from a DICOM series.

The SEG references every source instance, one frame per source slice, with one segment per tissue
class (NCR, ED, ET: non-overlapping). Voxels are mapped between the study's grid and the source
frames through the DICOM geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing;
LPS -> RAS), never by assuming an order, so a series stored in any orientation comes out right.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainseg_gui import __version__
from brainseg_gui.core.atomic import FileSet, write_into
from brainseg_gui.core.errors import BrainSegError, GridMismatchError, StudyLoadError
from brainseg_gui.core.export import Provenance, check_target
from brainseg_gui.core.image_io import DICOM_SUFFIXES, image_suffix, is_dicom_file
from brainseg_gui.core.labels import TISSUES, LabelConvention
from brainseg_gui.core.study import Grid, Study

log = logging.getLogger(__name__)

#: Segment number of each tissue class in the SEG.
SEGMENT_NUMBERS = {"NCR": 1, "ED": 2, "ET": 3}
SEGMENT_LABELS = {"NCR": "Necrotic / non-enhancing tumour core", "ED": "Peritumoral edema",
                  "ET": "Enhancing tumour"}
#: SNOMED CT codes (value, meaning) of each class: morphologic abnormalities.
SEGMENT_TYPES = {"NCR": ("6574001", "Necrosis"), "ED": ("79654002", "Edema"),
                 "ET": ("108369006", "Neoplasm")}
#: Largest distance (in voxels) a frame's pixel may lie off the grid's voxel centres.
GEOMETRY_TOLERANCE = 0.05


@dataclass(frozen=True)
class FrameGeometry:
    """Where pixel (r, c) of one source frame lies in the grid: index = origin + r*row_step + c*col_step."""

    origin: np.ndarray
    row_step: np.ndarray
    col_step: np.ndarray
    rows: int
    columns: int

    def indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = np.arange(self.rows)[:, None, None]
        c = np.arange(self.columns)[None, :, None]
        ijk = self.origin + r * self.row_step + c * self.col_step
        rounded = np.rint(ijk).astype(np.int64)
        return rounded[..., 0], rounded[..., 1], rounded[..., 2]


def dicom_series_folder(study: Study) -> tuple[Path, Path | None] | None:
    """(folder, member file or None) of the DICOM series the study came from, else None."""
    for path in study.sources.values():
        path = Path(path)
        if image_suffix(path) == ".dcmseries" and path.is_file():  # a series of a study: its files
            from brainseg_gui.core.dicom_volume import read_series_file

            first = Path(read_series_file(path)["frames"][0]["file"])
            return first.parent, first
        if path.is_dir():
            if any(image_suffix(f) in DICOM_SUFFIXES or is_dicom_file(f) for f in _files(path)[:20]):
                return path, None
        elif image_suffix(path) in DICOM_SUFFIXES or (path.is_file() and is_dicom_file(path)):
            return path.parent, path
    return None


def read_series(folder: Path, member: Path | None = None) -> list:
    """The instances (headers only) of the one series in `folder` (or of `member`'s series)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets = []
    for file in _files(folder):
        try:
            datasets.append(pydicom.dcmread(file, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError):
            continue
    if member is not None:
        wanted = pydicom.dcmread(member, stop_before_pixels=True).SeriesInstanceUID
        datasets = [d for d in datasets if d.SeriesInstanceUID == wanted]
    images = [d for d in datasets if "ImagePositionPatient" in d and "PixelSpacing" in d]
    series = {d.SeriesInstanceUID for d in images}
    if not images:
        raise StudyLoadError(f"{folder} holds no DICOM images with position and spacing")
    if len(series) > 1:
        raise StudyLoadError(f"{folder} holds {len(series)} DICOM series; a SEG references one")
    return images


def frame_geometry(dataset, grid: Grid) -> FrameGeometry:
    """Map one source instance's pixels to grid voxel indices (and check they land on voxels)."""
    return plane_geometry([float(v) for v in dataset.ImagePositionPatient],
                          [float(v) for v in dataset.ImageOrientationPatient],
                          [float(v) for v in dataset.PixelSpacing], int(dataset.Rows), int(dataset.Columns), grid,
                          name=f"DICOM instance {dataset.SOPInstanceUID}")


def plane_geometry(position: Sequence[float], orientation: Sequence[float], pixel_spacing: Sequence[float],
                   rows: int, columns: int, grid: Grid, *, name: str, loose_k: bool = False) -> FrameGeometry:
    """Map the pixels of one image plane (DICOM LPS geometry) to grid voxel indices, checking they land
    on voxels. `loose_k`: only in-plane, for a stack rebuilt on regular slices (accepted gaps), whose
    planes may lie between the grid's."""
    position_lps = np.array(position, dtype=np.float64)
    along_row, along_column = np.array(orientation[:3]), np.array(orientation[3:])  # increasing column, row
    row_spacing, col_spacing = (float(v) for v in pixel_spacing)
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    inverse = np.linalg.inv(grid.affine)

    def to_index(point_lps: np.ndarray) -> np.ndarray:
        return (inverse @ np.append(point_lps * lps_to_ras, 1.0))[:3]

    origin = to_index(position_lps)
    col_step = to_index(position_lps + col_spacing * along_row) - origin
    row_step = to_index(position_lps + row_spacing * along_column) - origin
    geometry = FrameGeometry(origin, row_step, col_step, rows, columns)
    checked = slice(0, 2) if loose_k else slice(0, 3)
    corners = [origin + r * row_step + c * col_step for r in (0, rows - 1) for c in (0, columns - 1)]
    for point in (origin, origin + row_step, origin + col_step, *corners):
        off = np.abs(point - np.rint(point))[checked].max()
        inside = all(-0.5 <= v < n - 0.5 for v, n in zip(point, grid.shape))
        if off > GEOMETRY_TOLERANCE or not inside:
            raise GridMismatchError(
                f"{name} does not lie on the study's grid ({grid.describe()}): its pixel maps to voxel "
                f"{np.round(point, 3).tolist()}")
    return geometry


def write_dicom_seg(path: Path, labels: np.ndarray, study: Study, prov: Provenance, *,
                    overwrite: bool = False, files: FileSet | None = None) -> Path:
    """Write `labels` (BraTS values on the study's grid) as a DICOM-SEG referencing the source series.

    With `files`, the SEG joins that set (written with the rest or not at all).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    source = dicom_series_folder(study)
    if source is None:
        raise BrainSegError(f"study {study.case_id!r} was not read from a DICOM series, so there is "
                            "nothing for a DICOM-SEG to reference; export NIfTI instead")
    path = Path(path)
    check_target(path, study, overwrite=overwrite)
    datasets = read_series(*source)
    if labels.shape != study.grid.shape:
        raise GridMismatchError(f"mask shape {labels.shape} is not the study's grid {study.grid.shape}")
    values = LabelConvention.BRATS.tissue_values
    segment_of = np.zeros(256, dtype=np.uint8)
    for tissue in TISSUES:
        segment_of[values[tissue]] = SEGMENT_NUMBERS[tissue]
    frames = np.stack([segment_of[labels[frame_geometry(d, study.grid).indices()]] for d in datasets])
    algorithm = hd.AlgorithmIdentificationSequence(
        name="BrainSeg", family=codes.cid7162.ArtificialIntelligence, version=prov.model_version or "none")
    edited = prov.edited
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=SEGMENT_NUMBERS[tissue],
            segment_label=SEGMENT_LABELS[tissue],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=Code(SEGMENT_TYPES[tissue][0], "SCT", SEGMENT_TYPES[tissue][1]),
            algorithm_type="SEMIAUTOMATIC" if edited else "AUTOMATIC",
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"BrainSeg {tissue}",
        )
        for tissue in TISSUES
    ]
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="BrainSeg (research use only)",
        manufacturer_model_name="BrainSeg",
        software_versions=__version__,
        device_serial_number="none",
        content_description=(f"Tumour segmentation, model {prov.model_version or 'none'}, "
                             + (f"edited ({prov.comparison.changed} voxels)" if edited else "unedited"))[:64],
        content_creator_name=_person_name(prov.user),
        content_label="TUMOUR",
        omit_empty_frames=False,
    )
    write_into(files, path, seg.save_as)
    log.info("wrote DICOM-SEG %s (%d frames referencing %s)", path, len(datasets), source[0])
    return path


def read_dicom_seg(path: Path, study: Study) -> np.ndarray:
    """Read a SEG written for `study` back onto its grid as BraTS labels (for checks and re-import)."""
    import highdicom as hd

    source = dicom_series_folder(study)
    if source is None:
        raise BrainSegError(f"study {study.case_id!r} has no DICOM series to place the SEG on")
    datasets = {d.SOPInstanceUID: d for d in read_series(*source)}
    seg = hd.seg.segread(str(path))
    referenced = [uid for _, _, uid in seg.get_source_image_uids() if uid in datasets]
    if not referenced:
        raise BrainSegError(f"{path} references none of the instances of {source[0]}")
    frames = seg.get_pixels_by_source_instance(referenced, combine_segments=True, skip_overlap_checks=True)
    values = LabelConvention.BRATS.tissue_values
    label_of = np.zeros(max(SEGMENT_NUMBERS.values()) + 1, dtype=np.uint8)
    for tissue, number in SEGMENT_NUMBERS.items():
        label_of[number] = values[tissue]
    labels = np.zeros(study.grid.shape, dtype=np.uint8)
    for uid, frame in zip(referenced, frames):
        labels[frame_geometry(datasets[uid], study.grid).indices()] = label_of[frame]
    return labels


def _person_name(user: str) -> str:
    """A DICOM person name (PN) from a login name: one family-name component ('root' -> 'root^')."""
    return ("".join(ch for ch in user if ch not in "^=\\")[:63] or "unknown") + "^"


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise StudyLoadError(f"cannot list {folder}: {exc}") from exc
