"""The DICOM study builder writes what it says: exact grids, the case's pixels, decodable variants.

Thin studies (a 40-slice t1ce slab) keep this under a few seconds; the real BraTS case is needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_study_builder import (
    ENHANCED_MR_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SERIES_ORDER,
    VENDOR_STYLES,
    BuiltStudy,
    build_study,
    load_case,
    read_frames,
    series_pixels,
    stored,
)

from brainseg_gui.core.image_io import LPS_TO_RAS, read_image


@pytest.fixture(scope="module")
def study(real_case: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    return build_study(real_case, tmp_path_factory.mktemp("dicom_study"), thin=True)


@pytest.fixture(scope="module")
def variant(real_case: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """GE style (signed pixels), enhanced t1ce, three compressions, a dropped slice, one flat folder."""
    return build_study(real_case, tmp_path_factory.mktemp("dicom_variant"), vendor="ge", thin=True,
                       enhanced=("t1ce",), compress={"t2": "jpeg2000", "flair": "jpeg-ls-lossless", "t1ce": "rle"},
                       drop_slices={"t1": [2]}, file_names="numbered", nested=False)


def _series_folder(files: tuple[Path, ...], into: Path) -> Path:
    """A folder holding only these files (a flat export mixes series)."""
    into.mkdir(parents=True)
    for path in files:
        shutil.copy(path, into / path.name)
    return into


def _assert_read_back(study: BuiltStudy, key: str, folder: Path) -> None:
    series = study.get(key)
    array, grid = read_image(folder)
    assert series.grid is not None and grid.shape == series.grid.shape, key
    assert np.allclose(grid.affine, series.grid.affine, atol=1e-4, rtol=0), (key, grid.affine, series.grid.affine)
    assert np.array_equal(array, read_frames(series.files)), key


def test_series_share_one_study_and_world(study: BuiltStudy) -> None:
    assert [s.key for s in study.series] == list(SERIES_ORDER)
    assert {s.true_class for s in study.series} == {"t1", "t1ce", "t2", "flair", "other"}
    headers = {s.key: pydicom.dcmread(s.files[0], stop_before_pixels=True) for s in study.series}
    assert {h.StudyInstanceUID for h in headers.values()} == {study.study_uid}
    assert len({h.FrameOfReferenceUID for h in headers.values()}) == 1
    assert len({h.SeriesInstanceUID for h in headers.values()}) == len(SERIES_ORDER)
    assert headers["t1"].SeriesTime < headers["t1ce"].SeriesTime
    assert headers["t1ce"].MRAcquisitionType == "3D" and headers["t1"].MRAcquisitionType == "2D"
    assert headers["t1ce"].ContrastBolusAgent and "ContrastBolusAgent" not in headers["t1"]
    assert headers["flair"].SeriesDescription == "t2_tirm_tra_dark-fluid"
    assert list(headers["localizer"].ImageType)[:3] == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert all(h.SOPClassUID == MR_IMAGE_STORAGE for h in headers.values())
    assert all(p.read_bytes()[128:132] == b"DICM" for p in study.files)
    assert all(p.parent.parent.name == "ST000000" for p in study.files)
    assert all(p.name == h.SOPInstanceUID for p, h in zip((s.files[0] for s in study.series), headers.values()))


@pytest.mark.parametrize("key", ["t1", "t1ce", "t2", "flair", "adc"])
def test_simpleitk_reads_back_the_grid_and_pixels(study: BuiltStudy, key: str) -> None:
    _assert_read_back(study, key, study.get(key).files[0].parent)  # nested: one folder per series


def test_pixels_are_the_case_resampled(study: BuiltStudy, real_case: Path) -> None:
    case = load_case(real_case)
    for key in ("t1", "t1ce", "t2", "flair"):
        grid = study.get(key).grid
        assert grid is not None
        expected = stored(series_pixels(case, key, grid), signed=False)
        assert np.array_equal(read_frames(study.get(key).files), expected), key
        assert expected.max() > 500, key  # anatomy, not an empty field of view


def test_flair_is_oblique_and_dwi_has_two_b_values_per_position(study: BuiltStudy) -> None:
    orientation = np.array(pydicom.dcmread(study.get("flair").files[0]).ImageOrientationPatient, dtype=float)
    assert np.degrees(np.arccos(orientation[4])) == pytest.approx(10.0, abs=1e-6)
    dwi = [pydicom.dcmread(p, stop_before_pixels=True) for p in study.get("dwi").files]
    positions: dict[float, list[tuple[float, ...]]] = {}
    for ds in dwi:
        positions.setdefault(float(ds.DiffusionBValue), []).append(tuple(map(float, ds.ImagePositionPatient)))
    assert sorted(positions) == [0.0, 1000.0] and positions[0.0] == positions[1000.0]
    assert list(dwi[0].ImageType)[:4] == ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
    adc = pydicom.dcmread(study.get("adc").files[0], stop_before_pixels=True)
    assert list(adc.ImageType)[:4] == ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
    assert study.get("adc").grid == study.get("dwi").grid
    localizer = {tuple(pydicom.dcmread(p, stop_before_pixels=True).ImageOrientationPatient)
                 for p in study.get("localizer").files}
    assert len(localizer) == 3 and len(study.get("localizer").files) == 9


def test_truth_lies_on_the_t1ce_grid(study: BuiltStudy, real_case: Path) -> None:
    case = load_case(real_case)
    assert study.truth_grid == study.get("t1ce").grid
    assert study.truth.shape == study.truth_grid.shape and set(np.unique(study.truth)) <= {0, 1, 2, 4}
    k0 = round(float(np.linalg.solve(case.grid.affine, study.truth_grid.affine[:, 3])[2]))
    assert np.array_equal(study.truth, case.labels[:, :, k0:k0 + study.truth.shape[2]])
    assert (study.truth == 4).sum() > 1000  # the slab goes through the tumour


def test_enhanced_t1ce_is_one_file_highdicom_reads(variant: BuiltStudy) -> None:
    highdicom = pytest.importorskip("highdicom")
    series = variant.get("t1ce")
    assert len(series.files) == 1 and series.grid is not None
    ds = pydicom.dcmread(series.files[0])
    assert ds.SOPClassUID == ENHANCED_MR_IMAGE_STORAGE and "RepetitionTime" not in ds
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert shared.MRTimingAndRelatedParametersSequence[0].RepetitionTime == 8.2
    assert shared.MRModifierSequence[0].InversionTimes == 450.0
    assert ds.NumberOfFrames == series.grid.shape[2]
    volume = highdicom.imread(series.files[0]).get_volume()
    affine = (LPS_TO_RAS @ volume.affine)[:, [2, 1, 0, 3]]  # (slice, row, column) -> (i, j, k)
    array = volume.array.transpose(2, 1, 0)
    if affine[:3, 2] @ series.grid.affine[:3, 2] < 0:  # highdicom stacks the slices the other way
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1.0, array.shape[2] - 1
        affine, array = affine @ flip, array[:, :, ::-1]
    assert np.allclose(affine, series.grid.affine, atol=1e-4, rtol=0)
    assert np.array_equal(array, read_frames(series.files))


def test_compressed_series_decode_to_the_same_pixels(variant: BuiltStudy, real_case: Path, tmp_path: Path) -> None:
    case = load_case(real_case)
    syntaxes = {"t2": "1.2.840.10008.1.2.4.90", "flair": "1.2.840.10008.1.2.4.80", "t1ce": "1.2.840.10008.1.2.5"}
    for key, syntax in syntaxes.items():
        series = variant.get(key)
        assert series.grid is not None
        assert pydicom.dcmread(series.files[0]).file_meta.TransferSyntaxUID == syntax, key
        expected = stored(series_pixels(case, key, series.grid), signed=True)
        pixels = read_frames(series.files)
        assert pixels.dtype == np.int16 and np.array_equal(pixels, expected), key
        _assert_read_back(variant, key, _series_folder(series.files, tmp_path / key))


def test_flat_numbered_layout_and_dropped_slice(variant: BuiltStudy) -> None:
    assert {p.parent for p in variant.files} == {variant.root / "DICOM"}
    assert sorted(p.name for p in variant.files) == [f"IM{n:05d}" for n in range(1, len(variant.files) + 1)]
    t1 = variant.get("t1")
    assert t1.grid is not None and len(t1.files) == t1.grid.shape[2] - 1
    numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in t1.files]
    assert 3 not in numbers and numbers == sorted(numbers)
    assert pydicom.dcmread(t1.files[0], stop_before_pixels=True).Manufacturer == "GE MEDICAL SYSTEMS"


def test_every_vendor_names_every_series() -> None:
    expected = {"siemens": "t2_tirm_tra_dark-fluid", "ge": "Ax T2 FLAIR", "philips": "T2W_FLAIR",
                "canon": "FLAIR_AX", "united": "t2_flair_tra"}
    for vendor, style in VENDOR_STYLES.items():
        assert set(style.protocols) == set(SERIES_ORDER), vendor
        assert style.protocols["flair"].description == expected[vendor]
        assert style.protocols["flair"].ti == 2500 and style.protocols["t1"].tr == 500
