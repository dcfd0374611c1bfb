"""Orientation and re-gridding round trips on a real case: same anatomy, exact geometry written back.

The real case (LPS under nibabel) is cropped around its tumour and stored re-oriented (RAS, LAS,
a permuted PIR), with a shifted origin and at 2 mm; each variant is loaded, compared in RAS order,
and its label map written back with `save_label_map` on the loaded grid.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from io_builders import Volumes, cropped, read_case, reoriented, write_brats

from brainseg_gui.core.image_io import save_label_map
from brainseg_gui.core.io import load_study
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.study import SEQUENCES, Study

ORIENTATIONS = [("L", "P", "S"), ("R", "A", "S"), ("L", "A", "S"), ("P", "I", "R")]


@pytest.fixture(scope="module")
def small_case(real_case: Path) -> Volumes:
    return cropped(read_case(real_case))


def _load_variant(folder: Path, volumes: Volumes, suffix: str = ".nii") -> tuple[Study, dict[str, Path]]:
    paths = write_brats(folder, "Case", volumes, suffix=suffix)
    return load_study(folder), paths


def _check_written_back(study: Study, seg_file: Path, out: Path) -> None:
    """save_label_map on the loaded grid reproduces the input's shape, affine, qform and sform."""
    assert study.labels is not None
    save_label_map(out, study.labels, study.grid)
    source, written = nib.load(seg_file), nib.load(out)
    assert written.shape == source.shape
    assert np.array_equal(written.affine, source.affine)
    assert np.array_equal(written.header.get_sform(), source.header.get_sform())
    assert np.array_equal(written.header.get_qform(), source.header.get_qform())
    assert np.array_equal(np.asanyarray(written.dataobj), np.asanyarray(source.dataobj))


def test_reoriented_variants_hold_the_same_anatomy(small_case: Volumes, tmp_path: Path) -> None:
    in_ras: list[dict[str, np.ndarray]] = []
    for axcodes in ORIENTATIONS:
        volumes = small_case if axcodes == ("L", "P", "S") else reoriented(small_case, axcodes)
        if axcodes == ("R", "A", "S"):  # what nibabel itself does
            canonical = nib.as_closest_canonical(nib.Nifti1Image(small_case.arrays["flair"], small_case.affine))
            assert np.array_equal(canonical.affine, volumes.affine)
            assert np.array_equal(np.asanyarray(canonical.dataobj), volumes.arrays["flair"])
        folder = tmp_path / "".join(axcodes)
        study, paths = _load_variant(folder, volumes)
        assert study.grid.axcodes == axcodes
        assert np.array_equal(study.grid.affine, volumes.affine)
        assert study.grid.shape == volumes.arrays["seg"].shape
        ras = Reorientation(study.grid)
        in_ras.append({**{n: ras.apply(study.images[n]) for n in SEQUENCES}, "seg": ras.apply(study.labels)})
        assert ras.spacing == pytest.approx((1.0, 1.0, 1.0))
        _check_written_back(study, paths["seg"], folder / "written_seg.nii.gz")
    for other in in_ras[1:]:
        for name, array in in_ras[0].items():
            assert np.array_equal(other[name], array), name
    assert in_ras[0]["seg"].any() and set(np.unique(in_ras[0]["seg"])) == {0, 1, 2, 4}


def test_shifted_origin_and_2mm_grid(small_case: Volumes, tmp_path: Path) -> None:
    shift = np.eye(4)
    shift[:3, 3] = [12.5, -7.25, 3.0]
    shifted = Volumes(small_case.arrays, shift @ small_case.affine)
    study, paths = _load_variant(tmp_path / "shifted", shifted, suffix=".nii.gz")
    assert np.array_equal(study.grid.affine, shifted.affine)
    assert np.array_equal(study.images["t2"], small_case.arrays["t2"].astype(np.float32))
    _check_written_back(study, paths["seg"], tmp_path / "shifted_out.nii.gz")

    coarse = Volumes({k: np.ascontiguousarray(v[::2, ::2, ::2]) for k, v in small_case.arrays.items()},
                     small_case.affine @ np.diag([2.0, 2.0, 2.0, 1.0]))
    study, paths = _load_variant(tmp_path / "coarse", coarse)
    assert study.grid.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert study.grid.voxel_volume_ml == pytest.approx(0.008)
    # The 2 mm voxel centres are the original's even voxels, at the same world positions.
    assert np.allclose(study.grid.affine @ [1, 1, 1, 1], small_case.affine @ [2, 2, 2, 1])
    _check_written_back(study, paths["seg"], tmp_path / "coarse_out.nii.gz")
