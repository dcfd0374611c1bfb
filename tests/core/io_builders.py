"""Builders for the loader tests: real cases cropped, re-oriented and written under other names.

Cropping keeps the data real (voxel values and geometry of a real BraTS case) but small, so the
tests that write many variants stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

SEQUENCE_SUFFIXES = ("t1", "t1ce", "t2", "flair")
BRATS23_SUFFIXES = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


@dataclass
class Volumes:
    """Arrays in file order (i, j, k) and their voxel -> RAS affine."""

    arrays: dict[str, np.ndarray]  # t1, t1ce, t2, flair, seg
    affine: np.ndarray


def read_case(case_dir: Path) -> Volumes:
    case_id = case_dir.name
    arrays = {}
    affine = None
    for name in (*SEQUENCE_SUFFIXES, "seg"):
        image = nib.load(case_dir / f"{case_id}_{name}.nii.gz")
        arrays[name] = np.asarray(image.dataobj)
        affine = image.affine
    assert affine is not None
    return Volumes(arrays, affine)


def cropped(volumes: Volumes, margin: int = 6) -> Volumes:
    """The tumour's bounding box plus `margin`, with the affine moved so world positions are kept."""
    hits = np.argwhere(volumes.arrays["seg"] > 0)
    low = np.maximum(hits.min(axis=0) - margin, 0)
    high = np.minimum(hits.max(axis=0) + 1 + margin, volumes.arrays["seg"].shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    shift = np.eye(4)
    shift[:3, 3] = low
    return Volumes({k: np.ascontiguousarray(v[box]) for k, v in volumes.arrays.items()}, volumes.affine @ shift)


def reoriented(volumes: Volumes, axcodes: tuple[str, str, str]) -> Volumes:
    """Same anatomy, voxels stored in another axis order (flips / permutations only)."""
    shape = volumes.arrays["seg"].shape
    transform = ornt.ornt_transform(ornt.io_orientation(volumes.affine), ornt.axcodes2ornt(axcodes))
    arrays = {k: np.ascontiguousarray(ornt.apply_orientation(v, transform)) for k, v in volumes.arrays.items()}
    return Volumes(arrays, volumes.affine @ ornt.inv_ornt_aff(transform, shape))


def write_brats(folder: Path, case_id: str, volumes: Volumes, *, suffix: str = ".nii.gz",
                brats23: bool = False, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write a case with BraTS 2017-21 (`_flair`) or 2023 (`-t2f`) names; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or (*SEQUENCE_SUFFIXES, "seg"):
        tag = f"-{BRATS23_SUFFIXES.get(name, name)}" if brats23 else f"_{name}"
        path = folder / f"{case_id}{tag}{suffix}"
        write_nifti(path, volumes.arrays[name], volumes.affine)
        paths[name] = path
    return paths


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path
