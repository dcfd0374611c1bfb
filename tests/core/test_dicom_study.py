"""DICOM studies: indexing (folders, zips, DICOMDIR), classing every series, reading the chosen ones.

Real headers of three vendors (../shared/data/dicom-vendors, whose README gives the true class of
each series) and studies built by `dicom_study_builder` from a synthetic phantom case (so the logic
is tested where the shared data is absent; tests/test_cli_dicom.py builds them from real cases).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_study_builder import BuiltStudy, build_study, read_frames

from brainseg_gui.core.dicom_classify import classify_study, reassign
from brainseg_gui.core.dicom_index import index_dicom
from brainseg_gui.core.dicom_study import gap_problems, open_dicom_study, stage_case
from brainseg_gui.core.dicom_volume import GapsError
from brainseg_gui.core.dicom_volume import read_frames as read_stack
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.image_io import read_image

#: The T1 series of the vendor corpus (README of dicom-vendors): (source repository, series number).
#: Every other series there is "other".
VENDOR_T1 = {("dcm_qa_xa30i", 5001), ("dcm_qa_xa30i", 6001), ("dcm_qa_xa30", 5), ("dcm_qa_xa30", 6),
             ("dcm_qa_frag", 5001), ("dcm_qa_frag", 6001), ("dcm_qa_ge", 5), ("dcm_qa_deident", 10),
             ("dcm_qa_cs_dl", 201), ("dcm_qa_cs_dl", 401), ("dcm_qa_cs_dl", 501), ("dcm_qa_philips_enh", 1301)}
#: What some of the others are (series number -> words the reason must hold), from the README.
VENDOR_OTHER = {("dcm_qa_xa30i", 1001): "localizer", ("dcm_qa_xa30i", 12001): "diffusion",
                ("dcm_qa_xa30i", 15001): "screen capture", ("dcm_qa_xa30i", 18001): "perfusion",
                ("dcm_qa_xa30i", 2001): "reformat", ("dcm_qa_xa30i", 10001): "field map",
                ("dcm_qa_xa30", 7): "functional", ("dcm_qa_xa30", 11): "diffusion", ("dcm_qa_table", 5): "localizer",
                ("dcm_qa_philips_enh", 1901): "perfusion", ("dcm_qa_philips_enh", 2001): "field map",
                ("dcm_qa_enh", 801): "field map", ("dcm_qa_ge", 2): "functional"}


@pytest.fixture(scope="session")
def vendor_corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vendors")
    for archive in sorted((shared_data / "dicom-vendors").glob("*.tar.xz")):
        with tarfile.open(archive) as packed:
            packed.extractall(root, filter="data")
    return root


@pytest.mark.slow
def test_every_real_vendor_series_is_classed_right(vendor_corpus: Path) -> None:
    """Each source repository is its own import (dcm_qa_frag re-encodes dcm_qa_xa30i's UIDs)."""
    seen = 0
    wrong = []
    for repo in sorted(p for vendor in vendor_corpus.iterdir() for p in vendor.iterdir()):
        index = index_dicom(repo)
        for study in index.studies:
            assignment = classify_study(study)
            for series in study.series:
                found = assignment.classes[series.uid]
                expected = "t1" if (repo.name, series.header.series_number) in VENDOR_T1 else "other"
                words = VENDOR_OTHER.get((repo.name, series.header.series_number))
                seen += 1
                if found.sequence != expected or (words and words not in (found.reason or "")):
                    wrong.append(f"{repo.name} {series.label}: {found.describe()} ({'; '.join(found.evidence)})")
                assert found.evidence, series.label
    assert not wrong, "\n".join(wrong)
    assert seen == 45  # 46 README rows; the Philips Raw Data object shares its T1's series UID


@pytest.mark.slow
def test_real_enhanced_and_compressed_series_read_as_the_classic_ones(vendor_corpus: Path) -> None:
    def volume(repo: str, number: int) -> tuple[np.ndarray, object]:
        study = index_dicom(next(vendor_corpus.glob(f"*/{repo}"))).studies[0]
        series = study.series_by(str(number))
        array, grid, _ = read_stack(series.main_stack.frames, label=series.label)
        return array, grid

    classic, grid = volume("dcm_qa_xa30i", 5001)
    jpeg_lossless, grid_jl = volume("dcm_qa_frag", 5001)
    jpeg_2000, _ = volume("dcm_qa_frag", 6001)
    normalised, _ = volume("dcm_qa_xa30i", 6001)
    np.testing.assert_array_equal(jpeg_lossless, classic)
    np.testing.assert_array_equal(jpeg_2000, normalised)
    assert grid_jl.same_as(grid)
    enhanced, enhanced_grid = volume("dcm_qa_xa30", 5)
    assert enhanced.shape == (128, 128, 96) and enhanced_grid.axcodes == ("P", "I", "R")


@pytest.mark.slow
def test_twin_t1_series_one_is_chosen_and_the_rule_is_said(vendor_corpus: Path) -> None:
    study = index_dicom(next(vendor_corpus.glob("*/dcm_qa_xa30i"))).study()
    assignment = classify_study(study)
    assert assignment.series_for("t1").header.series_number == 6001  # prescan-normalised (NORM) twin
    assert "2 candidates" in assignment.reasons["t1"] and "3D over 2D" in assignment.reasons["t1"]
    assert assignment.missing == ("t1ce", "t2", "flair")
    overridden = reassign(assignment, {"t1": "5001"})
    assert overridden.series_for("t1").header.series_number == 5001
    assert overridden.classes[overridden.chosen["t1"]].evidence[0] == "chosen by the user as t1"


# -- studies built from a phantom case ----------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic BraTS-style case: the study logic needs headers and geometry, not a real brain."""
    from brainseg_gui.core.phantom import write_phantom_case

    return write_phantom_case(tmp_path_factory.mktemp("phantom"), seed=4, shape=(96, 112, 80))


@pytest.fixture(scope="module")
def built(phantom_case: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    return build_study(phantom_case, tmp_path_factory.mktemp("study") / "export", thin=True)


def _check_identified(study_path: Path, built: BuiltStudy) -> None:
    _index, assignment = open_dicom_study(study_path)
    truth = {series.series_uid: series.true_class for series in built.series}
    for series in assignment.study.series:
        assert assignment.classes[series.uid].sequence == truth[series.uid], series.label
    for series in built.series:
        if series.true_class != "other":
            assert assignment.chosen[series.true_class] == series.series_uid


@pytest.mark.parametrize("vendor", ["siemens", "ge", "philips", "canon", "united"])
def test_built_studies_of_every_vendor_are_identified(vendor: str, phantom_case: Path, tmp_path: Path) -> None:
    built = build_study(phantom_case, tmp_path / vendor, vendor=vendor, thin=True)
    _check_identified(built.root, built)


def test_the_chosen_series_read_back_on_their_exact_grids(built: BuiltStudy, tmp_path: Path) -> None:
    index, assignment = open_dicom_study(built.root)
    case = stage_case(index, assignment, tmp_path / "staged")
    assert set(case.files) == {"t1", "t1ce", "t2", "flair"} and case.layout == "dicom"
    for name, path in case.files.items():
        series = built.get(name)
        array, grid = read_image(path)
        assert grid.same_as(series.grid, tolerance=1e-6), name
        np.testing.assert_array_equal(array, read_frames(list(series.files)).astype(np.float32))
    assert not any(str(tmp_path) in str(p) for p in built.files)  # staged apart from the study


def test_zip_and_dicomdir_index_the_same_study(built: BuiltStudy, tmp_path: Path) -> None:
    packed = tmp_path / "study.zip"
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in built.files:
            archive.write(path, path.relative_to(built.root))
    from_zip = index_dicom(packed).study()
    assert {s.uid for s in from_zip.series} == {s.series_uid for s in built.series}
    _check_identified(packed, built)

    from pydicom.fileset import FileSet

    fileset = FileSet()
    for path in built.files:
        fileset.add(pydicom.dcmread(path))
    cd = tmp_path / "cd"
    fileset.write(cd)
    assert (cd / "DICOMDIR").is_file()
    _check_identified(cd / "DICOMDIR", built)
    lost = next(p for p in sorted(cd.rglob("*")) if p.is_file() and p.name != "DICOMDIR")
    lost.unlink()
    index = index_dicom(cd / "DICOMDIR")
    assert any(why == "named in the DICOMDIR but missing" and path.name == lost.name for path, why in index.skipped)


def test_missing_slices_are_reported_and_read_only_when_accepted(phantom_case: Path, tmp_path: Path) -> None:
    built = build_study(phantom_case, tmp_path / "gap", vendor="philips", thin=True, drop_slices={"t2": [3]},
                        enhanced=("t1ce",), compress={"flair": "jpeg2000"}, file_names="numbered", nested=False)
    index, assignment = open_dicom_study(built.root)
    assert "missing slices: 1 slice(s) absent" in gap_problems(assignment)["t2"][0]
    t2 = assignment.series_for("t2")
    with pytest.raises(GapsError, match="accept"):
        read_stack(t2.main_stack.frames, label=t2.label)
    _volume, grid, warnings = read_stack(t2.main_stack.frames, accept_gaps=True, label=t2.label)
    assert grid.same_as(built.get("t2").grid, tolerance=1e-6)  # rebuilt on the full regular grid
    assert "linear interpolation" in warnings[-1]
    case = stage_case(index, assignment, tmp_path / "staged")
    with pytest.raises(GapsError):
        read_image(case.files["t2"])
    _flair, flair_grid = read_image(case.files["flair"])  # JPEG 2000, tilted 10 degrees
    assert flair_grid.same_as(built.get("flair").grid, tolerance=1e-6)
    t1ce, _ = read_image(case.files["t1ce"])  # one Enhanced MR file
    np.testing.assert_array_equal(t1ce, read_frames(list(built.get("t1ce").files)).astype(np.float32))


def test_several_studies_are_listed_and_one_is_chosen(phantom_case: Path, tmp_path: Path) -> None:
    first = build_study(phantom_case, tmp_path / "both" / "a", thin=True)
    second = build_study(phantom_case, tmp_path / "both" / "b", thin=True, vendor="ge", patient_id="OTHER")
    index = index_dicom(tmp_path / "both")
    with pytest.raises(StudyLoadError, match="2 DICOM studies") as error:
        index.study()
    assert first.study_uid in str(error.value) and second.study_uid in str(error.value)
    assert index.study(second.study_uid[:30]).patient_id == "OTHER"


# -- bad input ----------------------------------------------------------------------------------------


def test_a_folder_without_dicom_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    (tmp_path / "slice.dcm").write_bytes(b"\0" * 500)
    with pytest.raises(StudyLoadError, match="holds no DICOM images"):
        index_dicom(tmp_path)


def test_damaged_files_are_skipped_and_listed(built: BuiltStudy, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(built.root, study)
    broken = study / "broken"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 20)
    index = index_dicom(study)
    assert [path.name for path, _ in index.skipped] == ["broken"]
    assert len(index.study().series) == len(built.series)


def test_non_mr_and_screen_captures_are_other(built: BuiltStudy, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(built.root, study)
    t2 = built.get("t2")
    for path in t2.files:  # the same images, now claiming to be CT
        dataset = pydicom.dcmread(study / path.relative_to(built.root))
        dataset.Modality = "CT"
        dataset.save_as(study / path.relative_to(built.root))
    _, assignment = open_dicom_study(study)
    found = assignment.classes[t2.series_uid]
    assert found.sequence == "other" and found.reason == "not MR (modality CT)"
    assert "t2" in assignment.missing


def test_an_undecodable_transfer_syntax_is_named(built: BuiltStudy, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(built.root, study)
    for path in built.get("t1").files:
        target = study / path.relative_to(built.root)
        dataset = pydicom.dcmread(target)
        dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder here
        dataset.PixelData = pydicom.encaps.encapsulate([b"\0\0\1\xb3" + b"\0" * 64])
        dataset["PixelData"].VR = "OB"
        dataset.save_as(target, enforce_file_format=True)
    index, assignment = open_dicom_study(study)
    case = stage_case(index, assignment, tmp_path / "staged")
    with pytest.raises(StudyLoadError, match=r"MPEG2.*1\.2\.840\.10008\.1\.2\.4\.100.*cannot be decoded"):
        read_image(case.files["t1"])


def test_zip_bombs_and_escaping_members_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IM0001", b"\0" * (64 << 20))
    with pytest.raises(StudyLoadError, match="zip bomb"):
        index_dicom(bomb)
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as archive:
        archive.writestr("../../outside", b"x")
    with pytest.raises(StudyLoadError, match="outside the folder"):
        index_dicom(escape)
    assert not (tmp_path.parent / "outside").exists()


def test_a_dicomdir_naming_only_missing_files(tmp_path: Path, built: BuiltStudy) -> None:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    fileset.add(pydicom.dcmread(built.get("t2").files[0]))
    fileset.write(tmp_path / "cd")
    for path in (tmp_path / "cd").rglob("*"):
        if path.is_file() and path.name != "DICOMDIR":
            path.unlink()
    with pytest.raises(StudyLoadError, match="no DICOM images") as error:
        index_dicom(tmp_path / "cd" / "DICOMDIR")
    assert "named in the DICOMDIR but missing" in str(error.value)


def test_pipes_are_never_opened_and_huge_headers_are_refused(built: BuiltStudy, tmp_path: Path, monkeypatch) -> None:
    import os

    from brainseg_gui.core import read_guard
    from brainseg_gui.core.cases import find_case

    study = tmp_path / "study"
    shutil.copytree(built.root, study)
    os.mkfifo(study / "pipe")  # opening it for reading would wait for a writer for ever
    assert len(index_dicom(study).study().series) == len(built.series)
    with pytest.raises(StudyLoadError, match="not a regular file"):
        find_case(study / "pipe")
    monkeypatch.setattr(read_guard, "MAX_IMAGE_VOXELS", 1000)
    t2 = open_dicom_study(study)[1].series_for("t2")
    with pytest.raises(StudyLoadError, match="more than BrainSeg reads"):
        read_stack(t2.main_stack.frames, label=t2.label)


def test_one_file_of_a_pacs_tree_opens_its_whole_study(phantom_case: Path, tmp_path: Path) -> None:
    """A double-clicked file lies in one series' folder: its study is found above it, and only its study."""
    patients = tmp_path / "patients"
    first = build_study(phantom_case, patients / "A", thin=True)
    build_study(phantom_case, patients / "B", thin=True, patient_id="OTHER")
    (patients / "notes.txt").write_text("a folder of many patients is not one study")
    clicked = first.get("t2").files[0]
    _, assignment = open_dicom_study(clicked)
    assert assignment.study.uid == first.study_uid
    assert {s.uid for s in assignment.study.series} == {s.series_uid for s in first.series}
