"""Writing label maps: exact geometry, uint8, description, JSON sidecar, atomic, inputs protected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainseg_gui.core.errors import BrainSegError, LabelError
from brainseg_gui.core.image_io import read_image, save_label_map, sidecar_path, write_image
from brainseg_gui.core.study import Grid

# NIfTI-1 stores the affine as float32: any affine read from a NIfTI file (as here) survives exactly.
AFFINE = np.array([[-0.875, 0.0, 0.0, 90.5], [0.0, 0.0, 1.125, -120.25], [0.0, -1.25, 0.0, 60.0], [0, 0, 0, 1]])


@pytest.fixture
def labels() -> np.ndarray:
    out = np.zeros((7, 6, 5), dtype=np.int16)
    out[2:5, 1:4, 1:3] = 2
    out[3, 2, 2] = 4
    out[1, 1, 1] = 1
    return out


def test_label_map_keeps_geometry_values_and_description(tmp_path: Path, labels: np.ndarray) -> None:
    grid = Grid(labels.shape, AFFINE)
    target = tmp_path / "case_pred.nii.gz"
    save_label_map(target, labels, grid, description="BrainSeg 0.1 prediction, model ab12cd",
                   sidecar={"model": "ab12cd", "convention": "brats"})
    assert target.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    image = nib.load(target)
    assert image.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(image.dataobj), labels)
    assert np.array_equal(image.affine, AFFINE)
    sform, sform_code = image.header.get_sform(coded=True)
    qform, qform_code = image.header.get_qform(coded=True)
    assert (int(sform_code), int(qform_code)) == (1, 1)
    assert np.array_equal(sform, AFFINE)
    assert np.allclose(qform, AFFINE, atol=1e-6)
    assert image.header["descrip"].item() == b"BrainSeg 0.1 prediction, model ab12cd"
    assert json.loads((tmp_path / "case_pred.json").read_text()) == {"model": "ab12cd", "convention": "brats"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_pred.json", "case_pred.nii.gz"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    _, read_grid = read_image(target)
    assert read_grid.same_as(grid, tolerance=0.0)


def test_uncompressed_nifti_and_long_description(tmp_path: Path, labels: np.ndarray) -> None:
    target = tmp_path / "out.nii"
    save_label_map(target, labels, Grid(labels.shape, AFFINE), description="é" * 60)
    assert target.read_bytes()[344:348] == b"n+1\x00"  # plain single-file NIfTI-1
    descrip = nib.load(target).header["descrip"].item()
    assert len(descrip) <= 80 and descrip.decode("utf-8") == "é" * 40
    assert sidecar_path(target) == tmp_path / "out.json" and not sidecar_path(target).exists()


def test_refuses_to_overwrite_inputs(tmp_path: Path, labels: np.ndarray) -> None:
    source = tmp_path / "X_seg.nii.gz"
    source.write_bytes(b"original")
    grid = Grid(labels.shape, AFFINE)
    with pytest.raises(BrainSegError, match="X_seg.nii.gz"):
        save_label_map(tmp_path / "." / "X_seg.nii.gz", labels, grid, protect=[source])
    assert source.read_bytes() == b"original"
    with pytest.raises(BrainSegError, match="other.json"):
        save_label_map(tmp_path / "other.nii.gz", labels, grid, sidecar={}, protect=[tmp_path / "other.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X_seg.nii.gz"]


def test_failed_write_leaves_target_untouched(tmp_path: Path, labels: np.ndarray,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "pred.nii.gz"
    target.write_bytes(b"previous result")

    def broken_save(image: nib.Nifti1Image, filename: str | os.PathLike) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(BrainSegError, match="pred.nii.gz.*No space left"):
        save_label_map(target, labels, Grid(labels.shape, AFFINE), sidecar={"a": 1})
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.nii.gz"]


def test_temporary_name_keeps_the_compressed_suffix(tmp_path: Path, labels: np.ndarray,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_save = nib.save

    def spy(image: nib.Nifti1Image, filename: str | os.PathLike) -> None:
        seen.append(str(filename))
        real_save(image, filename)

    monkeypatch.setattr(nib, "save", spy)
    save_label_map(tmp_path / "a.nii.gz", labels, Grid(labels.shape, AFFINE))
    assert len(seen) == 1 and seen[0].endswith(".nii.gz") and Path(seen[0]).parent == tmp_path
    assert Path(seen[0]).name.startswith(".")


def test_bad_labels_and_targets(tmp_path: Path, labels: np.ndarray) -> None:
    grid = Grid(labels.shape, AFFINE)
    with pytest.raises(LabelError, match="integers"):
        save_label_map(tmp_path / "a.nii.gz", labels.astype(np.float32), grid)
    with pytest.raises(LabelError, match="0..255"):
        save_label_map(tmp_path / "a.nii.gz", labels * 100, grid)
    with pytest.raises(BrainSegError, match="NIfTI"):
        save_label_map(tmp_path / "a.nrrd", labels, grid)
    with pytest.raises(BrainSegError, match="shape"):
        save_label_map(tmp_path / "a.nii.gz", labels[:3], grid)
    with pytest.raises(BrainSegError, match="does not exist"):
        save_label_map(tmp_path / "no" / "a.nii.gz", labels, grid)
    assert list(tmp_path.iterdir()) == []


def test_write_image_keeps_float_dtype(tmp_path: Path) -> None:
    volume = np.linspace(-1.5, 2.5, 7 * 6 * 5, dtype=np.float32).reshape(7, 6, 5)
    write_image(tmp_path / "prob.nii.gz", volume, Grid(volume.shape, AFFINE))
    array, grid = read_image(tmp_path / "prob.nii.gz")
    assert array.dtype == np.float32 and np.array_equal(array, volume)
    assert np.array_equal(grid.affine, AFFINE)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    spacing=st.tuples(*[st.sampled_from([0.5, 0.75, 1.0, 2.0, 6.5, -1.0, -0.859375])] * 3),
    origin=st.tuples(*[st.floats(-300, 300, width=32)] * 3),
    permutation=st.permutations([0, 1, 2]),
    seed=st.integers(0, 2**16),
)
def test_save_then_read_is_identity(tmp_path_factory: pytest.TempPathFactory, shape: tuple[int, int, int],
                                    spacing: tuple[float, float, float], origin: tuple[float, float, float],
                                    permutation: list[int], seed: int) -> None:
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)[:, permutation]
    affine[:3, 3] = origin
    labels = np.random.default_rng(seed).choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=shape)
    target = tmp_path_factory.mktemp("prop") / "labels.nii.gz"
    save_label_map(target, labels, Grid(shape, affine))
    array, grid = read_image(target)
    assert array.dtype == np.uint8 and np.array_equal(array, labels)
    assert np.array_equal(grid.affine, affine) and grid.shape == shape
