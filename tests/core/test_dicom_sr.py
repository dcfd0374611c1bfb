"""DICOM SR of tumour volumes: a tiny MR series and a highdicom SEG of it are built in memory, the SR is
written and read back with pydicom and highdicom, and its study, references, values and units checked."""

from __future__ import annotations

import copy
import math
import os
import stat
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from brainseg_gui.core.dicom_sr import MANUFACTURER, build_volume_report, write_volume_report
from brainseg_gui.core.errors import BrainSegError

LABELS = ("Whole tumour (WT)", "Tumour core (TC)", "Enhancing tumour (ET)")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
VOLUMES = {1: 12.345678901234567, 2: 3.5, 3: 0.0}
FLAGS = ("segmented without FLAIR", "slices rebuilt by interpolation")


def mr_series(study_uid: str, slices: int = 4, size: int = 16) -> list[Dataset]:
    """An axial MR series (uint16, 1 x 1 x 2 mm) with everything highdicom needs from a source image."""
    series_uid, frame_uid = generate_uid(), generate_uid()
    datasets = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "PH001", "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20240101", "120000", "", ""
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.Modality = "1", 7, k + 1, "MR"
        ds.Manufacturer = "test"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.full((size, size), 100 + k, np.uint16).tobytes()
        datasets.append(ds)
    return datasets


def make_seg(sources: list[Dataset]) -> hd.seg.Segmentation:
    """A BINARY SEG of `sources` with three nested (overlapping) segments WT > TC > ET."""
    size = int(sources[0].Rows)
    mask = np.zeros((len(sources), size, size, 3), bool)
    mask[:, 2:14, 2:14, 0] = True
    mask[1:3, 4:12, 4:12, 1] = True
    mask[1:3, 6:10, 6:10, 2] = True
    algorithm = hd.AlgorithmIdentificationSequence(
        name="BrainSeg", family=codes.cid7162.ArtificialIntelligence, version="test")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=NEOPLASM, algorithm_type="AUTOMATIC", algorithm_identification=algorithm)
        for number, label in enumerate(LABELS, start=1)
    ]
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=1007,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="BrainSeg", manufacturer_model_name="BrainSeg",
        software_versions="test", device_serial_number="none")


@pytest.fixture(scope="module")
def case() -> tuple[hd.seg.Segmentation, list[Dataset]]:
    sources = mr_series(generate_uid())
    return make_seg(sources), sources


def groups_by_label(sr: hd.sr.Comprehensive3DSR) -> dict[str, hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    groups = sr.content.get_volumetric_roi_measurement_groups()
    return {group.tracking_identifier: group for group in groups}


@pytest.mark.parametrize("seg_from", ["memory", "segread"])
def test_report_round_trips_in_the_segs_study(case, tmp_path: Path, seg_from: str) -> None:
    seg, sources = case
    if seg_from == "segread":
        seg.save_as(tmp_path / "seg.dcm")
        seg = hd.seg.segread(tmp_path / "seg.dcm")
    report = build_volume_report(seg, VOLUMES, source_images=sources, model_version="abc123", flags=FLAGS)
    path = write_volume_report(tmp_path / "volumes.dcm", report)
    assert path == tmp_path / "volumes.dcm"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644

    raw = pydicom.dcmread(path)
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert raw.Modality == "SR"
    assert raw.StudyInstanceUID == seg.StudyInstanceUID
    assert raw.PatientID == seg.PatientID
    assert raw.SeriesInstanceUID not in {seg.SeriesInstanceUID, sources[0].SeriesInstanceUID}
    assert raw.SOPInstanceUID not in {seg.SOPInstanceUID, *(s.SOPInstanceUID for s in sources)}
    assert (raw.SeriesNumber, raw.InstanceNumber) == (2000, 1)
    assert raw.SeriesDescription == "BrainSeg tumour volumes"
    assert raw.Manufacturer == MANUFACTURER
    assert (raw.CompletionFlag, raw.VerificationFlag, raw.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED",
                                                                                "PRELIMINARY")
    evidence = {(ref.ReferencedSOPInstanceUID, series.SeriesInstanceUID)
                for study in raw.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    assert (seg.SOPInstanceUID, seg.SeriesInstanceUID) in evidence
    assert {(s.SOPInstanceUID, s.SeriesInstanceUID) for s in sources} <= evidence
    assert "PertinentOtherEvidenceSequence" not in raw

    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    groups = groups_by_label(sr)
    assert set(groups) == set(LABELS)
    for number, label in enumerate(LABELS, start=1):
        group = groups[label]
        assert group.tracking_uid is not None
        assert group.finding_type == NEOPLASM
        assert group.finding_category == codes.SCT.MorphologicallyAbnormalStructure
        (measurement,) = group.get_measurements()
        assert measurement.name == codes.SCT.Volume
        assert measurement.value == VOLUMES[number]  # exact: FloatingPointValue travels with the DS text
        assert measurement.unit.value == "ml" and measurement.unit.scheme_designator == "UCUM"
        referenced = group.referenced_segment
        assert referenced is not None
        item = referenced[0].ReferencedSOPSequence[0]
        assert (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) == (seg.SOPClassUID, seg.SOPInstanceUID)
        assert item.ReferencedSegmentNumber == number
        assert referenced[1].value == sources[0].SeriesInstanceUID  # Source Series for Segmentation
    assert len({group.tracking_uid for group in groups.values()}) == 3

    observers = sr.content.get_observer_contexts()
    (device,) = [o.observer_identifying_attributes for o in observers]
    assert isinstance(device, hd.sr.DeviceObserverIdentifyingAttributes)
    assert device.manufacturer_name == MANUFACTURER and "abc123" in (device.model_name or "")
    procedure = next(item for item in raw.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "121058")
    assert procedure.ConceptCodeSequence[0].CodeValue == "24590-2"
    assert report_flags(raw) == list(FLAGS)


def report_flags(raw: Dataset) -> list[str]:
    """The TEXT items of the root's "Qualitative Evaluations" container."""
    containers = [item for item in raw.ContentSequence
                  if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "C0034375"]
    return [text.TextValue for container in containers for text in container.ContentSequence]


def test_no_flags_means_no_evaluations_container(case, tmp_path: Path) -> None:
    seg, sources = case
    report = build_volume_report(seg, VOLUMES, source_images=sources, model_version="abc123", flags=["", "  "])
    assert report_flags(report) == []
    single = build_volume_report(seg, VOLUMES, source_images=sources, model_version="", flags="no FLAIR")
    assert report_flags(single) == ["no FLAIR"]


def test_sources_from_two_series_are_listed_image_by_image(case) -> None:
    seg, sources = case
    other = mr_series(sources[0].StudyInstanceUID)
    seg = copy.deepcopy(seg)
    extra = Dataset()
    extra.SeriesInstanceUID = other[0].SeriesInstanceUID
    extra.ReferencedInstanceSequence = []
    seg.ReferencedSeriesSequence.append(extra)
    report = build_volume_report(seg, VOLUMES, source_images=[*sources, *other], model_version="abc123")
    for group in hd.sr.Comprehensive3DSR.from_dataset(report).content.get_volumetric_roi_measurement_groups():
        referenced = group.referenced_segment
        assert referenced is not None
        images = [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in referenced[1:]]
        assert images == [s.SOPInstanceUID for s in [*sources, *other]]


def without_segments(seg: Dataset) -> Dataset:
    seg = copy.deepcopy(seg)
    seg.SegmentSequence = []
    return seg


@pytest.mark.parametrize(("change", "message"), [
    (lambda seg, sources: (without_segments(seg), VOLUMES, sources), "no segments"),
    (lambda seg, sources: (seg, {**VOLUMES, 4: 1.0}, sources), "segment 4"),
    (lambda seg, sources: (seg, {**VOLUMES, "1": 1.0}, sources), "'1'"),
    (lambda seg, sources: (seg, {1: 1.0, 2: 1.0}, sources), "segment(s) [3]"),
    (lambda seg, sources: (seg, {**VOLUMES, 2: -0.5}, sources), "-0.5"),
    (lambda seg, sources: (seg, {**VOLUMES, 2: math.nan}, sources), "nan"),
    (lambda seg, sources: (seg, {**VOLUMES, 3: math.inf}, sources), "inf"),
    (lambda seg, sources: (seg, {**VOLUMES, 3: "lots"}, sources), "'lots'"),
    (lambda seg, sources: (seg, VOLUMES, []), "no source images"),
    (lambda seg, sources: (seg, VOLUMES, mr_series(generate_uid())), "study"),
    (lambda seg, sources: (seg, VOLUMES, mr_series(sources[0].StudyInstanceUID)), "was made from series"),
    (lambda seg, sources: (sources[0], VOLUMES, sources), "not a DICOM Segmentation"),
])
def test_bad_inputs_raise_naming_the_value(case, change, message: str) -> None:
    seg, volumes, sources = change(*case)
    with pytest.raises(BrainSegError) as caught:
        build_volume_report(seg, volumes, source_images=sources, model_version="abc123")
    assert message in str(caught.value)


def test_write_replaces_an_existing_file_only_on_success(case, tmp_path: Path) -> None:
    seg, sources = case
    target = tmp_path / "volumes.dcm"
    target.write_bytes(b"old report")
    report = build_volume_report(seg, VOLUMES, source_images=sources, model_version="abc123")

    broken = copy.deepcopy(report)

    def save_half_then_fail(filename, **kwargs) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    broken.save_as = save_half_then_fail  # type: ignore[method-assign]
    with pytest.raises(BrainSegError, match="disk full"):
        write_volume_report(target, broken)
    assert target.read_bytes() == b"old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volumes.dcm"]

    with pytest.raises(BrainSegError, match="not a DICOM dataset"):
        write_volume_report(target, object())
    with pytest.raises(BrainSegError, match="disk full"):  # a failed write leaves no folder it made
        write_volume_report(tmp_path / "missing" / "volumes.dcm", broken)
    assert not (tmp_path / "missing").exists()
    assert target.read_bytes() == b"old report"

    write_volume_report(target, report)
    assert pydicom.dcmread(target).SOPInstanceUID == report.SOPInstanceUID
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volumes.dcm"]
