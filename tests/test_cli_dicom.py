"""A DICOM study on the command line: `info` shows the series and the choice, `predict` segments it,
maps the labels onto the T1ce series and sends back a SEG and an SR that read back; bad input fails
in one line with nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.cli_support import one_error_line, run

sys.path.insert(0, str(Path(__file__).parent / "core"))
from dicom_study_builder import BuiltStudy, build_study


@pytest.fixture(scope="module")
def study(real_case: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    return build_study(real_case, tmp_path_factory.mktemp("cli_dicom") / "PACS_EXPORT", vendor="siemens", thin=True)


def test_info_lists_every_series_with_its_class_and_the_chosen_four(capsys, study: BuiltStudy) -> None:
    status, out, err = run(capsys, "info", study.root)
    assert status == 0, err
    for series in study.series:
        assert series.description in out
    assert "t1ce   7 t1_mprage_tra_p2_iso_KM" in out or f"t1ce   {study.get('t1ce').series_number} " in out
    assert "localizer" in out and "diffusion (DWI/ADC)" in out
    status, out, err = run(capsys, "info", study.root, "--json")
    report = json.loads(out)["dicom"]
    for name in ("t1", "t1ce", "t2", "flair"):
        chosen = report["sequences"][name]
        assert chosen["series_uid"] == study.get(name).series_uid
        assert chosen["evidence"] and chosen["confidence"] >= 0.6
        assert [c["series_uid"] for c in chosen["candidates"]] == [study.get(name).series_uid]
    classes = {s["series_uid"]: s["class"] for s in report["series"]}
    assert classes == {s.series_uid: s.true_class for s in study.series}


def test_series_override_and_study_choice(capsys, study: BuiltStudy) -> None:
    t1 = study.get("t1")
    status, out, err = run(capsys, "info", study.root, "--json", "--series", f"flair={t1.series_number}")
    assert status == 0, err
    report = json.loads(out)["dicom"]["sequences"]
    assert report["flair"]["series_uid"] == t1.series_uid and report["flair"]["why_chosen"] == "chosen by the user"
    status, _, err = run(capsys, "info", study.root, "--series", "t3=2")
    assert status == 2 and "'t3' is not one of" in one_error_line(err)
    status, _, err = run(capsys, "info", study.root, "--series", "t1ce=999")
    assert status == 2 and "no series '999'" in one_error_line(err)


def test_report_pdf_goes_beside_the_seg_and_sr_as_an_encapsulated_pdf(capsys, study: BuiltStudy, tiny_model: Path,
                                                                       tmp_path: Path) -> None:
    from brainseg_gui.core.report_pdf import ENCAPSULATED_PDF, pdf_of

    status, _, err = run(capsys, "predict", study.root, "-o", tmp_path / "pred.nii.gz", "--report-pdf")
    assert status == 2 and "--report-pdf needs --dicom-out" in one_error_line(err)
    status, out, err = run(capsys, "predict", study.root, "-o", tmp_path / "pred.nii.gz", "--model", tiny_model,
                           "--device", "cpu", "--dicom-out", tmp_path / "dicom", "--report-pdf")
    assert status == 0, err
    written = sorted(p.name for p in (tmp_path / "dicom").iterdir())
    assert len(written) == 3 and any(name.endswith("_report.dcm") for name in written), written
    report = pydicom.dcmread(next((tmp_path / "dicom").glob("*_report.dcm")))
    assert report.SOPClassUID == ENCAPSULATED_PDF and report.StudyInstanceUID == study.study_uid
    assert pdf_of(report).startswith(b"%PDF-") and "report:" in out


def test_predict_writes_the_mask_on_the_t1ce_series_and_a_seg_and_sr(capsys, study: BuiltStudy, tiny_model: Path,
                                                                     tmp_path: Path) -> None:
    from brainseg_gui.core.dicom_results import REGION_SEGMENTS
    from brainseg_gui.core.labels import LabelConvention, to_regions

    output = tmp_path / "pred.nii.gz"
    status, out, err = run(capsys, "predict", study.root, "-o", output, "--model", tiny_model,
                           "--device", "cpu", "--dicom-out", tmp_path / "dicom")
    assert status == 0, err
    image = nib.load(output)
    grid = study.get("t1ce").grid
    assert image.shape == grid.shape and np.allclose(image.affine, grid.affine, atol=1e-4)
    labels = np.asarray(image.dataobj).astype(np.uint8)
    sidecar = json.loads((tmp_path / "pred.json").read_text())
    assert sidecar["dicom_study"]["series"]["t1ce"]["series_uid"] == study.get("t1ce").series_uid
    seg_path, sr_path = (Path(p) for p in sidecar["dicom_results"]["files"])
    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == sorted([seg_path.name, sr_path.name])

    # The SEG, read back by highdicom through the source geometry, equals the NIfTI voxel for voxel.
    from brainseg_gui.core.dicom_results import read_study_seg

    staged = next(Path(p) for p in [sidecar["prepared"]["source"]])
    regions = to_regions(labels, LabelConvention.BRATS)
    np.testing.assert_array_equal(read_study_seg(seg_path, grid, staged), regions)
    # ... and by a second reader: raw pydicom frames placed by their own plane positions.
    seg = pydicom.dcmread(seg_path)
    assert seg.StudyInstanceUID == study.study_uid and seg.SeriesInstanceUID != study.get("t1ce").series_uid
    assert seg.FrameOfReferenceUID == pydicom.dcmread(study.get("t1ce").files[0]).FrameOfReferenceUID
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    inverse = np.linalg.inv(grid.affine)
    rebuilt = np.zeros_like(regions)
    for frame, groups in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        number = int(groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position = np.array([float(v) for v in groups.PlanePositionSequence[0].ImagePositionPatient])
        k = round((inverse @ np.append(position * [-1, -1, 1], 1.0))[2])
        rebuilt[number - 1, :, :, k] = frame.T > 0
    np.testing.assert_array_equal(rebuilt, regions)
    labels_of = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert labels_of == {1: "Whole tumour (WT)", 2: "Tumour core (TC)", 3: "Enhancing tumour (ET)"}
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "BrainSeg"

    # The SR holds each region's volume in mL and references the SEG.
    import highdicom as hd

    sr = hd.sr.srread(sr_path)
    assert sr.StudyInstanceUID == study.study_uid
    voxel_ml = grid.voxel_volume_ml
    expected = {REGION_SEGMENTS[name]: float(regions[index].sum()) * voxel_ml
                for index, name in enumerate(("WT", "TC", "ET"))}
    groups = sr.content.get_volumetric_roi_measurement_groups() if hasattr(sr, "content") else []
    found = {}
    for group in groups:
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID if hasattr(
            segment, "referenced_sop_instance_uid") else True
        found[group.tracking_identifier] = group.get_measurements()[0].value
    assert found == {"Whole tumour (WT)": expected[1], "Tumour core (TC)": expected[2],
                     "Enhancing tumour (ET)": expected[3]}
    assert seg.SOPInstanceUID.encode() in sr_path.read_bytes()
    assert "SEG" in out and "SR" in out


def test_bad_dicom_input_fails_in_one_line_and_writes_nothing(capsys, study: BuiltStudy, tiny_model: Path,
                                                              tmp_path: Path, real_case: Path) -> None:
    output = tmp_path / "out" / "pred.nii.gz"
    output.parent.mkdir()
    status, _, err = run(capsys, "predict", study.root, "-o", output, "--model", tiny_model,
                         "--dicom-out", study.root / "results")
    assert status == 2 and "inside the study folder" in one_error_line(err)
    gaps = build_study(real_case, tmp_path / "gaps", thin=True, drop_slices={"t2": [2]})
    status, _, err = run(capsys, "predict", gaps.root, "-o", output, "--model", tiny_model)
    assert status == 2 and "missing slices" in one_error_line(err) and "--accept-gaps" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing")
    status, _, err = run(capsys, "info", empty)
    assert status == 2
    status, _, err = run(capsys, "predict", real_case, "-o", output, "--dicom-out", tmp_path / "d",
                         "--model", tiny_model)
    assert status == 2 and "needs a DICOM study" in one_error_line(err)
    assert list(output.parent.iterdir()) == [] and not (tmp_path / "d").exists()
    assert not (study.root / "results").exists()


def test_gaps_accepted_are_segmented_and_flagged(capsys, real_case: Path, tiny_model: Path, tmp_path: Path) -> None:
    gaps = build_study(real_case, tmp_path / "gaps", thin=True, drop_slices={"t2": [2]})
    output = tmp_path / "pred.nii.gz"
    status, _out, err = run(capsys, "predict", gaps.root, "-o", output, "--model", tiny_model, "--accept-gaps",
                           "--dicom-out", tmp_path / "dicom")
    assert status == 0, err
    sidecar = json.loads((tmp_path / "pred.json").read_text())
    assert any("interpolation" in flag for flag in sidecar["dicom_results"]["flags"])
    assert b"interpolation" in next((tmp_path / "dicom").glob("*_sr.dcm")).read_bytes()


def test_several_studies_need_a_choice(capsys, real_case: Path, tmp_path: Path) -> None:
    a = build_study(real_case, tmp_path / "cd" / "a", thin=True)
    b = build_study(real_case, tmp_path / "cd" / "b", thin=True, vendor="ge", patient_id="SECOND")
    status, _, err = run(capsys, "info", tmp_path / "cd")
    line = one_error_line(err)
    assert status == 2 and a.study_uid in line and b.study_uid in line and "--study" in line
    status, out, err = run(capsys, "info", tmp_path / "cd", "--study", b.study_uid)
    assert status == 0 and "SECOND" in out


@pytest.mark.slow
def test_a_full_study_is_segmented_well_with_the_shipped_model(capsys, tmp_path: Path, shared_data: Path) -> None:
    """A held-out case (not in the shipped model's training folds) as a GE study: Dice on the T1ce grid."""
    from brainseg_gui.core.labels import LabelConvention, to_regions
    from brainseg_gui.core.metrics import evaluate_regions

    built = build_study(shared_data / "brats2021" / "BraTS2021_00019", tmp_path / "study", vendor="ge")
    output = tmp_path / "pred.nii.gz"
    status, _out, err = run(capsys, "predict", built.root, "-o", output, "--device", "cpu",
                           "--dicom-out", tmp_path / "dicom")
    assert status == 0, err
    predicted = to_regions(np.asarray(nib.load(output).dataobj).astype(np.uint8), LabelConvention.BRATS)
    truth = to_regions(built.truth.astype(np.uint8), LabelConvention.BRATS)
    scores = {name: m.dice for name, m in evaluate_regions(predicted, truth, built.truth_grid.spacing).items()}
    assert scores["WT"] >= 0.8 and scores["TC"] >= 0.7 and scores["ET"] >= 0.65, scores


def test_a_phantom_study_runs_the_whole_chain_without_shared_data(capsys, tiny_model: Path, tmp_path: Path) -> None:
    """The same chain on a synthetic phantom (runs where ../shared/data is absent, as in CI)."""
    from brainseg_gui.core.phantom import write_phantom_case

    case = write_phantom_case(tmp_path / "phantom", seed=1, shape=(96, 112, 80))
    built = build_study(case, tmp_path / "study", vendor="philips", thin=True, enhanced=("t1ce",),
                        compress={"t2": "rle"})
    status, out, err = run(capsys, "info", built.root, "--json")
    assert status == 0, err
    classes = {s["series_uid"]: s["class"] for s in json.loads(out)["dicom"]["series"]}
    assert classes == {s.series_uid: s.true_class for s in built.series}
    output = tmp_path / "pred.nii.gz"
    status, out, err = run(capsys, "predict", built.root, "-o", output, "--model", tiny_model, "--device", "cpu",
                           "--dicom-out", tmp_path / "dicom")
    assert status == 0, err
    grid = built.get("t1ce").grid
    assert nib.load(output).shape == grid.shape
    np.testing.assert_allclose(nib.load(output).affine, grid.affine, atol=1e-4)
    seg = pydicom.dcmread(next((tmp_path / "dicom").glob("*_seg.dcm")))
    assert seg.StudyInstanceUID == built.study_uid and int(seg.NumberOfFrames) > 0
