"""NRRD, MetaImage and DICOM through SimpleITK: axis order and LPS -> RAS proven by round trips."""

from __future__ import annotations

import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from io_builders import Volumes, cropped, read_case, reoriented, write_nifti

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.image_io import read_image
from brainseg_gui.core.io import find_case, load_label_map, load_study
from brainseg_gui.core.labels import LabelConvention

sitk = pytest.importorskip("SimpleITK")


def _lps_point(affine: np.ndarray, index: tuple[int, int, int]) -> np.ndarray:
    """World point of a voxel in LPS (SimpleITK's frame) from our RAS affine."""
    ras = affine @ np.array([*index, 1.0])
    return np.array([-ras[0], -ras[1], ras[2]])


def _check_against_sitk(image: sitk.Image, array: np.ndarray, affine: np.ndarray) -> None:
    """Our array[i, j, k] is SimpleITK's pixel (i, j, k), at the same physical point."""
    size = image.GetSize()
    for index in [(0, 0, 0), (size[0] - 1, 0, 0), (3, size[1] - 2, 1), (size[0] // 2, size[1] // 3, size[2] - 1)]:
        assert array[index] == image.GetPixel(*index), index
        assert np.allclose(_lps_point(affine, index), image.TransformIndexToPhysicalPoint(index), atol=1e-5)


@pytest.fixture(scope="module")
def small_case(real_case: Path) -> Volumes:
    return cropped(read_case(real_case))


def _rotated(volumes: Volumes, degrees: float) -> Volumes:
    """An oblique grid: the same voxels rotated about the world z axis and shifted."""
    angle = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    rotation[:3, 3] = [12.5, -30.25, 7.0]
    return Volumes(volumes.arrays, rotation @ volumes.affine)


@pytest.mark.parametrize("variant", ["lps", "pir", "oblique"])
@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nhdr", ".mhd"])
def test_nifti_converted_by_simpleitk_reads_back_identically(
    small_case: Volumes, tmp_path: Path, variant: str, suffix: str
) -> None:
    volumes = {"lps": small_case, "pir": reoriented(small_case, ("P", "I", "R")),
               "oblique": _rotated(small_case, 20.0)}[variant]
    assert not np.allclose(volumes.affine[:3, :3], np.eye(3))
    nifti = write_nifti(tmp_path / "flair.nii.gz", volumes.arrays["flair"], volumes.affine)
    converted = tmp_path / f"flair{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(converted))

    from_nifti, grid_nifti = read_image(nifti)
    from_sitk, grid_sitk = read_image(converted)
    assert from_sitk.dtype == from_nifti.dtype == np.int16
    assert from_sitk.shape == from_nifti.shape == volumes.arrays["flair"].shape
    assert np.array_equal(from_sitk, volumes.arrays["flair"])
    # NIfTI stores the affine as float32: exactly what nibabel reads, within 1e-5 of what was asked.
    assert np.array_equal(grid_nifti.affine, nib.load(nifti).affine)
    assert np.allclose(grid_nifti.affine, volumes.affine, atol=1e-5, rtol=0)
    assert np.allclose(grid_sitk.affine, grid_nifti.affine, atol=1e-5, rtol=0)
    _check_against_sitk(sitk.ReadImage(str(converted)), from_sitk, grid_sitk.affine)


def test_nrrd_case_from_pyradiomics(shared_data: Path) -> None:
    image = shared_data / "nrrd" / "brain1_image.nrrd"
    array, grid = read_image(image)
    assert array.dtype == np.int16 and array.shape == (256, 256, 25)
    assert grid.spacing == pytest.approx((0.78125, 0.78125, 6.5))
    assert (int(array.min()), int(array.max())) == (0, 3057)
    _check_against_sitk(sitk.ReadImage(str(image)), array, grid.affine)

    case = find_case(image)
    assert case.layout == "files" and case.case_id == "brain1_image"
    assert dict(case.files) == {"flair": image}
    assert "only one sequence" in case.warnings[0]
    t2 = find_case(image, as_sequence="t2")
    assert list(t2.files) == ["t2"]

    study = load_study(image, seg=shared_data / "nrrd" / "brain1_label.nrrd")
    assert study.missing == ("t1", "t1ce", "t2")
    assert any("missing sequences: t1, t1ce, t2" in w for w in study.warnings)
    assert np.array_equal(study.images["flair"], array.astype(np.float32))
    assert set(np.unique(study.labels)) == {0, 1}
    labels, convention, label_grid = load_label_map(shared_data / "nrrd" / "brain1_label.nrrd",
                                                    reference=grid)
    assert labels.dtype == np.uint8 and convention is LabelConvention.BRATS
    assert label_grid.same_as(grid)


@pytest.fixture(scope="session")
def dicom_series(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    archive = shared_data / "dicom" / "SAG-anon.tar.xz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    target = tmp_path_factory.mktemp("dicom")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "dicom" / "SAG-anon"


def test_dicom_series_geometry_matches_its_headers(dicom_series: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    array, grid = read_image(dicom_series)
    assert array.dtype == np.uint16
    assert sorted(array.shape) == [192, 256, 256]
    assert sorted(grid.spacing) == pytest.approx([0.859375, 0.859375, 0.9])

    # Independent of SimpleITK: DICOM patient geometry (LPS) of the first and last slices in
    # GDCM's order. Rows run along the first IOP cosine (our i), columns along the second (our j).
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dicom_series))
    first, last = (pydicom.dcmread(files[n], stop_before_pixels=True) for n in (0, -1))
    flip = np.array([-1.0, -1.0, 1.0])
    row_cosine, column_cosine = (np.array(first.ImageOrientationPatient[:3], float),
                                 np.array(first.ImageOrientationPatient[3:], float))
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    assert np.allclose(grid.affine[:3, 3], flip * np.array(first.ImagePositionPatient, float), atol=1e-4)
    assert np.allclose(grid.affine[:3, 0], flip * row_cosine * column_spacing, atol=1e-5)
    assert np.allclose(grid.affine[:3, 1], flip * column_cosine * row_spacing, atol=1e-5)
    step = (np.array(last.ImagePositionPatient, float) - np.array(first.ImagePositionPatient, float))
    assert np.allclose(grid.affine[:3, 2], flip * step / (len(files) - 1), atol=1e-4)
    assert (array.shape[0], array.shape[1]) == (int(first.Columns), int(first.Rows))
    assert array.shape[2] == len(files) == 192

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    _check_against_sitk(reader.Execute(), array, grid.affine)


def test_dicom_folder_and_file_open_the_series(dicom_series: Path) -> None:
    case = find_case(dicom_series)
    assert case.layout == "dicom" and set(case.files) == {"t1"}  # an MPRAGE by its header, never "FLAIR"
    assert find_case(dicom_series.parent).files == case.files  # one folder above: the same study
    member = sorted(dicom_series.glob("*.dcm"))[10]
    from_file = find_case(member)
    assert from_file.layout == "dicom" and from_file.files == case.files
    study = load_study(from_file)
    assert study.images["t1"].shape == study.grid.shape
    assert sorted(study.grid.shape) == [192, 256, 256]


def test_dicom_folder_with_two_series_names_them(dicom_series: Path, tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import generate_uid

    files = sorted(dicom_series.glob("*.dcm"))
    other_uid = generate_uid()
    for n, source in enumerate(files[:6]):
        dataset = pydicom.dcmread(source)
        if n >= 3:
            dataset.SeriesInstanceUID = other_uid
        dataset.save_as(tmp_path / source.name)
    with pytest.raises(StudyLoadError, match="2 DICOM series") as error:
        read_image(tmp_path)
    assert other_uid in str(error.value) and str(tmp_path) in str(error.value)
    # A file of one series opens just that series.
    array, _ = read_image(tmp_path / files[4].name)
    assert array.shape[2] == 3


def test_folder_without_dicom_series(tmp_path: Path) -> None:
    (tmp_path / "slice.dcm").write_text("not DICOM at all")
    with pytest.raises(StudyLoadError, match="no DICOM series") as error:
        read_image(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_damaged_nrrd_names_the_file(tmp_path: Path, shared_data: Path) -> None:
    data = (shared_data / "nrrd" / "brain2_image.nrrd").read_bytes()
    broken = tmp_path / "brain2_image.nrrd"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(StudyLoadError, match="brain2_image.nrrd"):
        read_image(broken)
    header_only = tmp_path / "detached.mhd"
    header_only.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
                           "ElementDataFile = missing.raw\n")
    with pytest.raises(StudyLoadError, match="detached.mhd"):
        read_image(header_only)
