"""DICOM-SEG export: a small oblique series written here, and the real SAG-anon series; the SEG is
read back with highdicom/pydicom and its voxels and geometry compared with what was written."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from brainseg_gui.core.dicom_seg import (
    SEGMENT_NUMBERS,
    dicom_series_folder,
    frame_geometry,
    read_dicom_seg,
    write_dicom_seg,
)
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.export import ExportExistsError, provenance
from brainseg_gui.core.io import load_study


def write_series(folder: Path, shape=(14, 12, 12), spacing=(0.9, 1.1, 3.0), angle_deg=12.0) -> Path:
    """An oblique MR series (rows x columns x slices) with a bright block, as a scanner would write it."""
    folder.mkdir(parents=True)
    columns, rows, slices = shape
    angle = np.deg2rad(angle_deg)
    along_row = np.array([np.cos(angle), np.sin(angle), 0.0])  # direction of increasing column
    along_column = np.array([-np.sin(angle), np.cos(angle), 0.0])
    normal = np.cross(along_row, along_column)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "PH001", "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20240101", "120000", "", ""
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.Modality = "1", 7, k + 1, "MR"
        ds.Manufacturer = "test"
        ds.SeriesDescription, ds.MRAcquisitionType = "t2_tirm_tra_dark-fluid", "2D"  # a FLAIR, by its header
        ds.RepetitionTime, ds.EchoTime, ds.InversionTime = 9000, 90, 2500
        ds.Rows, ds.Columns = rows, columns
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing, column spacing
        ds.SliceThickness = spacing[2]
        origin = np.array([-10.0, 20.0, 5.0]) + (slices - 1 - k) * spacing[2] * normal  # stored top-down
        ds.ImagePositionPatient = [float(v) for v in origin]
        ds.ImageOrientationPatient = [float(v) for v in (*along_row, *along_column)]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        pixels = np.full((rows, columns), 100 + k, np.uint16)
        pixels[3:7, 4:9] = 900
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def synthetic_mask(shape: tuple[int, int, int]) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    i, j, k = shape
    labels[2:i - 3, 1:j - 2, 1:k - 1] = 2
    labels[4:i - 5, 3:j - 4, 2:k - 2] = 1
    labels[5:7, 4:6, 2:k - 2] = 4
    labels[0, 0, 0] = 4  # a corner voxel: the mapping must keep the edges
    return labels


def test_seg_of_an_oblique_series_reads_back_voxel_for_voxel(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "series")
    study = load_study(folder)
    assert dicom_series_folder(study)[0] == folder  # the series the study was classed from
    labels = synthetic_mask(study.grid.shape)
    ai = labels.copy()
    ai[labels == 1] = 4
    prov = provenance(study, labels, ai, model_version="abc123")
    out = write_dicom_seg(tmp_path / "mask.seg.dcm", labels, study, prov)

    np.testing.assert_array_equal(read_dicom_seg(out, study), labels)
    seg = pydicom.dcmread(out)
    assert seg.Modality == "SEG" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    sources = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in folder.iterdir()}
    assert seg.StudyInstanceUID == next(iter(sources.values())).StudyInstanceUID
    assert seg.FrameOfReferenceUID == next(iter(sources.values())).FrameOfReferenceUID
    assert seg.PatientID == "PH001"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [
        "Necrotic / non-enhancing tumour core", "Peritumoral edema", "Enhancing tumour"]
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"SEMIAUTOMATIC"}
    shared = seg.SharedFunctionalGroupsSequence[0]
    first = next(iter(sources.values()))
    np.testing.assert_allclose([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                               [float(v) for v in first.ImageOrientationPatient], atol=1e-6)
    np.testing.assert_allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
                               [float(v) for v in first.PixelSpacing])
    # every frame sits where its source instance is, and holds that instance's slice of the mask
    pixels = seg.pixel_array
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = sources[uid]
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in source.ImagePositionPatient], atol=1e-4)
        segment = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        tissue = {n: t for t, n in SEGMENT_NUMBERS.items()}[segment]
        expected = labels[frame_geometry(source, study.grid).indices()] == {"NCR": 1, "ED": 2, "ET": 4}[tissue]
        np.testing.assert_array_equal(pixels[index].astype(bool), expected)
    with pytest.raises(ExportExistsError):
        write_dicom_seg(out, labels, study, prov)
    with pytest.raises(BrainSegError, match="input"):
        write_dicom_seg(folder / "inside.dcm", labels, study, prov, overwrite=True)


def test_a_nifti_study_has_no_series_to_reference(tmp_path: Path) -> None:
    from tests.ui.conftest import write_toy_case

    study = load_study(write_toy_case(tmp_path / "toy"))
    assert dicom_series_folder(study) is None
    with pytest.raises(BrainSegError, match="not read from a DICOM series"):
        write_dicom_seg(tmp_path / "x.dcm", np.zeros(study.grid.shape, np.uint8), study,
                        provenance(study, np.zeros(study.grid.shape, np.uint8), None, model_version=None))


@pytest.mark.slow
def test_seg_of_the_real_sagittal_series(shared_data: Path, tmp_path: Path) -> None:
    with tarfile.open(shared_data / "dicom" / "SAG-anon.tar.xz") as archive:
        archive.extractall(tmp_path, filter="data")
    folder = next(p.parent for p in tmp_path.rglob("*.dcm"))
    study = load_study(folder)
    assert study.grid.shape == (256, 256, 192) or sorted(study.grid.shape) == [192, 256, 256]
    labels = np.zeros(study.grid.shape, np.uint8)
    centre = np.array(study.grid.shape) // 2
    grid_index = np.indices(study.grid.shape)
    distance = np.sqrt(sum(((grid_index[a] - centre[a]) * study.grid.spacing[a]) ** 2 for a in range(3)))
    labels[distance < 20] = 2
    labels[distance < 12] = 1
    labels[distance < 6] = 4
    prov = provenance(study, labels, None, model_version="m1")
    out = write_dicom_seg(tmp_path / "sag.seg.dcm", labels, study, prov)
    np.testing.assert_array_equal(read_dicom_seg(out, study), labels)
    seg = pydicom.dcmread(out, stop_before_pixels=True)
    assert int(seg.NumberOfFrames) >= 1
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"AUTOMATIC"}
