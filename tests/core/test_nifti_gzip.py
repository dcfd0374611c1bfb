"""A .nii.gz decompressed in one zlib call (image_io._decompressed_at_once) reads exactly what nibabel reads.

The one-call path exists for the GUI's cold start (app/preload.py); these tests pin that it changes
nothing else: values, dtype, scaling and affine are nibabel's; unusual files fall back to nibabel.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui.core import image_io
from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.image_io import read_image

_ONE_CALL = image_io._decompressed_at_once
AFFINE = np.array([[-0.9, 0.1, 0.0, 90.0], [0.05, 0.95, -0.2, -120.0], [0.0, 0.2, 3.0, -60.0], [0, 0, 0, 1]])


def _volume(dtype: type, shape: tuple[int, ...] = (23, 19, 11)) -> np.ndarray:
    values = np.random.default_rng(7).normal(300.0, 120.0, size=shape)
    return values.astype(dtype)


def _read_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, tuple, list]:
    """read_image through the one-call path (and whether it was taken), then through nibabel's own."""
    used: list = []
    original = _ONE_CALL

    def spy(*args: object) -> object:
        image = original(*args)  # type: ignore[arg-type]
        used.append(image is not None)
        return image

    monkeypatch.setattr(image_io, "_decompressed_at_once", spy)
    fast = read_image(path)
    monkeypatch.setattr(image_io, "_decompressed_at_once", lambda *args: None)
    slow = read_image(path)
    return fast, slow, used


def _assert_same(fast: tuple, slow: tuple) -> None:
    (a, grid_a), (b, grid_b) = fast, slow
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)
    assert np.array_equal(grid_a.affine, grid_b.affine)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64, np.int32])
def test_one_call_reads_what_nibabel_reads(dtype: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "P_flair.nii.gz"
    nib.save(nib.Nifti1Image(_volume(dtype), AFFINE), path)
    fast, slow, used = _read_both(path, monkeypatch)
    assert used == [True]
    _assert_same(fast, slow)


def test_scaled_nifti2_and_four_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scaled = nib.Nifti1Image(_volume(np.int16), AFFINE)
    scaled.header.set_slope_inter(0.5, -3.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    nib.save(nib.Nifti2Image(_volume(np.float32), AFFINE), tmp_path / "two.nii.gz")
    nib.save(nib.Nifti1Image(_volume(np.int16, (9, 8, 7, 4)), AFFINE), tmp_path / "msd.nii.gz")
    for name in ("scaled", "two", "msd"):
        fast, slow, used = _read_both(tmp_path / f"{name}.nii.gz", monkeypatch)
        assert used == [True], name
        _assert_same(fast, slow)
    assert read_image(tmp_path / "scaled.nii.gz")[0].dtype.kind == "f"  # the slope applied


def test_unusual_streams_fall_back_to_nibabel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain.nii"
    nib.save(nib.Nifti1Image(_volume(np.int16), AFFINE), plain)
    raw = plain.read_bytes()
    # Two gzip members (as `cat a.gz b.gz` makes): the first holds less than the declared data.
    (tmp_path / "members.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    for name in ("members",):
        fast, slow, used = _read_both(tmp_path / f"{name}.nii.gz", monkeypatch)
        assert used == [False], name
        _assert_same(fast, slow)
        assert np.array_equal(fast[0], nib.load(plain).get_fdata().astype(np.int16))


def test_data_beyond_the_declared_voxels_is_ignored_as_nibabel_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain.nii"
    nib.save(nib.Nifti1Image(_volume(np.int16), AFFINE), plain)
    (tmp_path / "longer.nii.gz").write_bytes(gzip.compress(plain.read_bytes() + b"\1" * 5000))
    fast, slow, used = _read_both(tmp_path / "longer.nii.gz", monkeypatch)
    assert used == [True]
    _assert_same(fast, slow)


def test_a_file_larger_than_its_data_could_compress_to_is_not_read_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small header with megabytes after it is streamed by nibabel, not read into memory at once."""
    path = tmp_path / "padded.nii.gz"
    nib.save(nib.Nifti1Image(_volume(np.uint8, (4, 4, 4)), AFFINE), path)
    path.write_bytes(path.read_bytes() + gzip.compress(np.random.default_rng(0).bytes(1 << 20)))
    read: list[Path] = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    image_io.read_image(path)
    assert path not in read


def test_a_stream_cut_before_its_checksum_is_truncated(tmp_path: Path) -> None:
    """Every voxel there but the gzip trailer (CRC-32, size) cut: nibabel read it, unchecked; now refused."""
    path = tmp_path / "P_flair.nii.gz"
    nib.save(nib.Nifti1Image(_volume(np.int16), AFFINE), path)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(StudyLoadError, match="truncated"):
        read_image(path)


def test_a_bomb_behind_the_voxels_is_left_to_nibabel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain.nii"
    nib.save(nib.Nifti1Image(_volume(np.uint8, (6, 5, 4)), AFFINE), plain)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(plain.read_bytes() + bytes(4 << 20)))  # 4 MiB of zeros in ~4 KB
    assert path.stat().st_size < 472 + 4096  # read whole (not the size check): the bomb check sends it back
    fast, slow, used = _read_both(path, monkeypatch)
    assert used == [False]
    _assert_same(fast, slow)
