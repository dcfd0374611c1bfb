"""A corpus of broken inputs: each raises its specific error, in one line naming the file."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui.core.errors import GridMismatchError, LabelError, StudyLoadError
from brainseg_gui.core.io import find_case, load_label_map, load_study, read_image

AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
SHAPE = (24, 20, 16)


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _volume(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 1000, size=shape).astype(np.int16)


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[8:14, 6:12, 5:10] = 2
    labels[10:12, 8:10, 6:8] = 4
    labels[9, 7, 6] = 1
    return labels


def _case(folder: Path, **overrides: np.ndarray) -> Path:
    """A small BraTS-named case; `overrides` replace a sequence's or the seg's array."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(("t1", "t1ce", "t2", "flair")):
        _nifti(folder / f"P_{name}.nii.gz", overrides.get(name, _volume(seed)))
    _nifti(folder / "P_seg.nii.gz", overrides.get("seg", _labels()))
    return folder


def _truncated(tmp: Path) -> Path:
    whole = _nifti(tmp / "whole.nii.gz", _volume()).read_bytes()
    (tmp / "whole.nii.gz").unlink()
    path = tmp / "P_flair.nii.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    return path


def _bad_checksum(tmp: Path) -> Path:
    """Every byte of the data there, the gzip trailer's CRC-32 wrong (bit rot, a bad copy)."""
    whole = bytearray(_nifti(tmp / "whole.nii.gz", _volume()).read_bytes())
    (tmp / "whole.nii.gz").unlink()
    whole[-8] ^= 0xFF
    path = tmp / "P_flair.nii.gz"
    path.write_bytes(bytes(whole))
    return path


def _damaged_stream(tmp: Path) -> Path:
    whole = bytearray(_nifti(tmp / "whole.nii.gz", _volume()).read_bytes())
    (tmp / "whole.nii.gz").unlink()
    middle = len(whole) // 2
    whole[middle:middle + 64] = bytes(64)
    path = tmp / "P_flair.nii.gz"
    path.write_bytes(bytes(whole))
    return path


def _zero_bytes(tmp: Path) -> Path:
    path = tmp / "P_flair.nii.gz"
    path.write_bytes(b"")
    return path


def _text_named_gz(tmp: Path) -> Path:
    path = tmp / "P_flair.nii.gz"
    path.write_text("patient notes, not an image\n" * 20)
    return path


def _text_named_nii(tmp: Path) -> Path:
    path = tmp / "P_flair.nii"
    path.write_text("patient notes, not an image\n" * 20)
    return path


def _gzip_of_text(tmp: Path) -> Path:
    path = tmp / "P_flair.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header" * 40))
    return path


def _truncated_uncompressed(tmp: Path) -> Path:
    whole = _nifti(tmp / "whole.nii", _volume()).read_bytes()
    (tmp / "whole.nii").unlink()
    path = tmp / "P_flair.nii"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _two_d(tmp: Path) -> Path:
    return _nifti(tmp / "P_flair.nii.gz", _volume(shape=(24, 20)))


def _five_d(tmp: Path) -> Path:
    return _nifti(tmp / "P_flair.nii.gz", _volume(shape=(8, 8, 6, 2, 3)))


def _four_d_three_channels(tmp: Path) -> Path:
    return _nifti(tmp / "P_flair.nii.gz", _volume(shape=(8, 8, 6, 3)))


def _complex(tmp: Path) -> Path:
    return _nifti(tmp / "P_flair.nii.gz", np.ones(SHAPE, dtype=np.complex64))


def _unsupported(tmp: Path) -> Path:
    path = tmp / "P_flair.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "P_flair.nii.gz"


BROKEN_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing path": (_missing, "does not exist"),
    "zero-byte file": (_zero_bytes, "empty"),
    "truncated .gz": (_truncated, "truncated"),
    "wrong gzip checksum": (_bad_checksum, "damaged"),
    "damaged .gz stream": (_damaged_stream, "damaged"),
    "text named .nii.gz": (_text_named_gz, "not gzip"),
    "text named .nii": (_text_named_nii, "not a NIfTI"),
    "gzip of text": (_gzip_of_text, "not a NIfTI"),
    "truncated .nii": (_truncated_uncompressed, "truncated"),
    "2D image": (_two_d, "2D"),
    "5D image": (_five_d, "5D"),
    "4D, 3 volumes": (_four_d_three_channels, "4D image with 3 volumes"),
    "complex voxels": (_complex, "complex"),
    "unsupported extension": (_unsupported, "unsupported file type"),
}


@pytest.mark.parametrize("kind", BROKEN_FILES)
def test_broken_file_raises_one_line_naming_it(kind: str, tmp_path: Path) -> None:
    build, expected = BROKEN_FILES[kind]
    path = build(tmp_path)
    with pytest.raises(StudyLoadError) as error:
        read_image(path)
    message = str(error.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message
    # Loading the case it belongs to fails the same way.
    with pytest.raises(StudyLoadError, match=path.name):
        load_study(None, files={"flair": path})


def test_broken_sequence_inside_a_case(tmp_path: Path) -> None:
    folder = _case(tmp_path / "P")
    (folder / "P_t2.nii.gz").write_bytes((folder / "P_t2.nii.gz").read_bytes()[:200])
    with pytest.raises(StudyLoadError, match="P_t2.nii.gz"):
        load_study(folder / "P_flair.nii.gz")


def test_folder_without_a_case(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(StudyLoadError, match="no recognisable case") as error:
        find_case(tmp_path)
    assert str(tmp_path) in str(error.value)
    with pytest.raises(StudyLoadError, match=str(tmp_path)):
        load_study(tmp_path)


def test_nan_volume_is_repaired_with_a_warning(tmp_path: Path) -> None:
    flair = _volume(3).astype(np.float32)
    flair[0, 0, :5] = np.nan
    flair[1, 2, 3] = np.inf
    study = load_study(_case(tmp_path / "P", flair=flair))
    assert np.isfinite(study.images["flair"]).all()
    assert study.images["flair"][0, 0, :5].tolist() == [0.0] * 5 and study.images["flair"][1, 2, 3] == 0.0
    assert study.images["flair"][5, 5, 5] == flair[5, 5, 5]
    assert study.warnings == ("flair (P_flair.nii.gz): 6 NaN/infinite voxels replaced by 0",)


def test_scaled_nifti_is_read_with_its_slope(tmp_path: Path) -> None:
    raw = _volume(4)
    image = nib.Nifti1Image(raw, AFFINE)
    image.header.set_slope_inter(0.5, 10.0)
    nib.save(image, tmp_path / "P_t1.nii.gz")
    array, _ = read_image(tmp_path / "P_t1.nii.gz")
    assert np.allclose(array, raw * 0.5 + 10.0)


def test_mismatched_shapes(tmp_path: Path) -> None:
    folder = _case(tmp_path / "P", t1=_volume(shape=(24, 20, 15)))
    with pytest.raises(GridMismatchError) as error:
        load_study(folder)
    message = str(error.value)
    assert "t1 P_t1.nii.gz: 24x20x15 voxels" in message and "flair P_flair.nii.gz: 24x20x16 voxels" in message
    assert "--allow-resample" in message
    study = load_study(folder, allow_resample=True)  # overlapping: resampled onto the FLAIR grid
    assert study.grid.shape == SHAPE
    assert any(w.startswith("t1 (P_t1.nii.gz) resampled") for w in study.warnings)


def test_resampling_onto_the_flair_grid_is_exact_where_voxels_coincide(tmp_path: Path) -> None:
    folder = _case(tmp_path / "P")
    fine = _volume(1).astype(np.float32)
    _nifti(folder / "P_t1ce.nii.gz", fine[::2, ::2, ::2], AFFINE @ np.diag([2.0, 2.0, 2.0, 1.0]))
    study = load_study(folder, allow_resample=True)
    assert np.array_equal(study.images["t1ce"][::2, ::2, ::2], fine[::2, ::2, ::2])
    between = study.images["t1ce"][1, 0, 0]
    assert between == pytest.approx((fine[0, 0, 0] + fine[2, 0, 0]) / 2)
    assert study.images["t1"].dtype == np.float32


def test_no_overlap_refuses_even_with_allow_resample(tmp_path: Path) -> None:
    far = AFFINE.copy()
    far[:3, 3] = [500.0, 0.0, 0.0]
    folder = _case(tmp_path / "P")
    _nifti(folder / "P_t2.nii.gz", _volume(2), far)
    with pytest.raises(GridMismatchError, match="origin"):
        load_study(folder)
    with pytest.raises(GridMismatchError, match="t2.*does not overlap"):
        load_study(folder, allow_resample=True)


@pytest.mark.parametrize("values, expected", [((5, 7), "[5, 7]"), ((3, 4), "mix 3 and 4")])
def test_unknown_label_values(tmp_path: Path, values: tuple[int, int], expected: str) -> None:
    labels = _labels()
    labels[0, 0, 0], labels[0, 0, 1] = values
    folder = _case(tmp_path / "P", seg=labels)
    with pytest.raises(LabelError) as error:
        load_study(folder)
    assert expected in str(error.value) and "P_seg.nii.gz" in str(error.value)
    with pytest.raises(LabelError, match="P_seg.nii.gz"):
        load_label_map(folder / "P_seg.nii.gz")


def test_label_values_outside_a_given_convention(tmp_path: Path) -> None:
    folder = _case(tmp_path / "P")
    with pytest.raises(LabelError, match=r"\[4\].*P_seg.nii.gz"):
        load_study(folder, label_convention="msd")


def test_float_labels(tmp_path: Path) -> None:
    integral = _labels().astype(np.float32)
    study = load_study(_case(tmp_path / "A", seg=integral))
    assert study.labels is not None and study.labels.dtype == np.uint8
    assert np.array_equal(study.labels, _labels())

    fractional = integral.copy()
    fractional[3, 3, 3] = 1.5
    with pytest.raises(LabelError, match=r"P_seg.nii.gz: label values must be integers, found 1.5"):
        load_study(_case(tmp_path / "B", seg=fractional))
    nearly = _labels().astype(np.float64)
    nearly[3, 3, 3] = 4.0000001  # shown as it is, not rounded to "4"
    with pytest.raises(LabelError, match=r"found 4\.0000001 \(1 voxels\)"):
        load_study(_case(tmp_path / "D", seg=nearly))
    many = integral.copy()
    many[0, 0, :10] = np.arange(10) + 0.5  # more than eight offending values: the list ends in "..."
    with pytest.raises(LabelError, match=r"found 0\.5, 1\.5, .*, 7\.5, \.\.\. \(10 voxels\)"):
        load_study(_case(tmp_path / "E", seg=many))
    negative = _labels().astype(np.int16)
    negative[0, 0, 0] = -1
    with pytest.raises(LabelError, match="-1"):
        load_study(_case(tmp_path / "C", seg=negative))


def test_labels_on_another_grid(tmp_path: Path) -> None:
    shifted = AFFINE.copy()
    shifted[:3, 3] = [2.0, 0.0, 0.0]
    folder = _case(tmp_path / "P")
    _nifti(folder / "P_seg.nii.gz", _labels(), shifted)
    with pytest.raises(GridMismatchError, match="P_seg.nii.gz.*another grid"):
        load_study(folder)
    study = load_study(folder, allow_resample=True)
    assert study.labels is not None and study.labels[7, 7, 6] == 1  # world x + 2 mm = 2 voxels down i (x = -i)
    with pytest.raises(GridMismatchError, match="P_seg.nii.gz"):
        load_label_map(folder / "P_seg.nii.gz", reference=study.grid)
    with pytest.raises(LabelError, match="four.nii.gz: a label map must be a 3D volume"):
        load_label_map(_nifti(tmp_path / "four.nii.gz", np.zeros((4, 4, 4, 4), np.uint8)))


def test_two_label_maps_for_one_case(tmp_path: Path) -> None:
    folder = _case(tmp_path / "P")
    _nifti(folder / "P_seg.nii", _labels())
    with pytest.raises(StudyLoadError, match="several label maps"):
        find_case(folder / "P_t1.nii.gz")
