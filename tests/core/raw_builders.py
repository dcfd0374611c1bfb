"""Synthetic "straight from the scanner" studies made from a real BraTS case, with known answers.

A BraTS case is co-registered, 1 mm, LPS and skull-stripped. `make_raw_case` undoes all of that
in ways whose truth is known: a synthetic skull and scalp (a bright shell around the brain mask,
a dark gap between them) and Rician background noise; each moved sequence is shifted by a known
rigid motion and stored on its own grid (one with 5 mm slices, averaged across the slab like a
real thick-slice acquisition; one in another axis order). The reference (t1ce) stays put, so the
prepared space is its world space and the motions are what registration has to recover.
Used by tests/core/test_prepare.py, test_registration.py, test_brain_extraction.py and bench/prepare.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt
from scipy import ndimage

from brainseg_gui.core.io import write_image
from brainseg_gui.core.registration import rigid_matrix
from brainseg_gui.core.study import SEQUENCES, Grid

#: Motions of the moved sequences: (rotation about R, A, S in degrees, translation in mm).
DEFAULT_MOTIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "t1": ((4.0, -3.0, 6.0), (5.0, -4.0, 3.0)),
    "t2": ((-6.0, 5.0, -3.0), (-7.0, 6.0, -5.0)),
    "flair": ((8.0, 2.0, -5.0), (4.0, 8.0, -6.0)),
}
#: Brightness of the scalp shell relative to the brain's median intensity, per sequence.
SCALP_BRIGHTNESS = {"t1": 1.6, "t1ce": 1.5, "t2": 1.1, "flair": 1.3}
#: Distances (mm outside the brain) of the gap (CSF + inner table) and the shell's outer edge.
GAP_MM, SHELL_MM = 3.0, 9.0
#: Background noise (sd of each complex channel) relative to the brain's median intensity.
NOISE = 0.03


@dataclass
class RawCase:
    """What was written, and the truth: motions, grids, brain mask and labels (reference grid)."""

    case_id: str
    files: dict[str, Path]
    grids: dict[str, Grid]
    motions: dict[str, np.ndarray]  # 4x4 RAS: reference world -> the sequence's world
    reference_grid: Grid
    brain: np.ndarray  # bool on reference_grid (the BraTS non-zero region)
    labels: np.ndarray  # uint8 BraTS labels on reference_grid
    extra: dict[str, object] = field(default_factory=dict)

    def labels_on(self, sequence: str) -> np.ndarray:
        """The true labels on `sequence`'s own grid (nearest neighbour through its motion)."""
        return _sample(self.labels, self.reference_grid, self.grids[sequence],
                       self.motions[sequence], order=0)


def load_brats(case_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(images float32 by sequence, labels uint8, affine) of a BraTS 2017-21 case folder."""
    case_id = case_dir.name
    images, affine = {}, None
    for name in SEQUENCES:
        image = nib.load(case_dir / f"{case_id}_{name}.nii.gz")
        images[name] = np.asarray(image.dataobj, dtype=np.float32)
        affine = np.array(image.affine)
    labels = np.asarray(nib.load(case_dir / f"{case_id}_seg.nii.gz").dataobj).astype(np.uint8)
    assert affine is not None
    return images, labels, affine


def make_raw_case(
    case_dir: Path,
    out_dir: Path,
    *,
    crop_margin_mm: float | None = 16.0,
    motions: Mapping[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = DEFAULT_MOTIONS,
    thick: str | None = "flair",
    slice_mm: float = 5.0,
    reoriented: str | None = "t2",
    skull: bool = True,
    seed: int = 0,
    downsample: int = 1,
) -> RawCase:
    """Write a raw-looking version of the BraTS case in `case_dir` to `out_dir` (BraTS names).

    `crop_margin_mm` crops to the brain's box plus that margin (None: keep the full 240x240x155).
    `downsample` > 1 first averages the case in blocks of that many voxels a side (fast tests:
    2 gives 2 mm voxels, an eighth of the work, and registration works on ~2 mm copies anyway).
    """
    rng = np.random.default_rng(seed)
    images, labels, affine = load_brats(case_dir)
    if downsample > 1:
        images, labels, affine = _downsample(images, labels, affine, downsample)
    brain = np.zeros(labels.shape, dtype=bool)
    for image in images.values():
        brain |= image > 0
    if crop_margin_mm is not None:
        box, affine = _brain_box(brain, affine, crop_margin_mm)
        images = {name: np.ascontiguousarray(a[box]) for name, a in images.items()}
        labels, brain = np.ascontiguousarray(labels[box]), np.ascontiguousarray(brain[box])
    reference = Grid(labels.shape, affine)
    outside = ndimage.distance_transform_edt(~brain, sampling=reference.spacing)
    centre = reference.affine[:3, :3] @ np.argwhere(brain).mean(axis=0) + reference.affine[:3, 3]
    out_dir.mkdir(parents=True, exist_ok=True)
    case_id = case_dir.name + "_raw"
    raw = RawCase(case_id, {}, {}, {}, reference, brain, labels)
    for name in SEQUENCES:
        image = images[name]
        level = float(np.median(image[brain]))
        if skull:
            image = image + scalp(outside, level * SCALP_BRIGHTNESS[name], rng)
        angles, shift = motions.get(name, ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
        motion = rigid_matrix(angles, shift, centre)
        grid = reference
        if name == thick:
            grid = _thick_grid(reference, slice_mm)
            # slab averaging: a Gaussian of FWHM ~ the slice thickness across the slices
            image = ndimage.gaussian_filter1d(image, slice_mm / 2.355 / reference.spacing[2], axis=2)
        if name == reoriented:
            grid = _reoriented_grid(grid, ("R", "A", "S"))
        moved = _sample(image, reference, grid, motion, order=1)
        if skull:
            moved = rician(moved, NOISE * level, rng)
        path = out_dir / f"{case_id}_{name}.nii.gz"
        write_image(path, moved.astype(np.float32), grid)
        raw.files[name], raw.grids[name], raw.motions[name] = path, grid, motion
    return raw


def _downsample(images: dict[str, np.ndarray], labels: np.ndarray, affine: np.ndarray,
                factor: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Block means of the images, the labels at each block's first voxel, the affine to match."""
    shape = tuple(n // factor * factor for n in labels.shape)
    crop = tuple(slice(0, n) for n in shape)
    blocks = [part for n in shape for part in (n // factor, factor)]
    small = {name: image[crop].reshape(blocks).mean(axis=(1, 3, 5), dtype=np.float32)
             for name, image in images.items()}
    # A block is brain only where all of its voxels are (keeps the brain region's edge crisp).
    for name, mean in small.items():
        inside = (images[name][crop] > 0).reshape(blocks).all(axis=(1, 3, 5))
        small[name] = np.where(inside, mean, np.float32(0))
    scale = np.diag([factor, factor, factor, 1.0]).astype(np.float64)
    scale[:3, 3] = (factor - 1) / 2.0  # the block's centre
    return small, np.ascontiguousarray(labels[::factor, ::factor, ::factor][tuple(
        slice(0, n // factor) for n in shape)]), affine @ scale


def _brain_box(brain: np.ndarray, affine: np.ndarray, margin_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    hits = np.argwhere(brain)
    margin = int(np.ceil(margin_mm))
    low = np.maximum(hits.min(axis=0) - margin, 0)
    high = np.minimum(hits.max(axis=0) + 1 + margin, brain.shape)
    shift = np.eye(4)
    shift[:3, 3] = low
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True)), affine @ shift


def scalp(outside_mm: np.ndarray, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """A shell GAP_MM..SHELL_MM outside the brain, soft-edged, with a smooth texture."""
    shell = np.clip(outside_mm - GAP_MM, 0, 1) * np.clip(SHELL_MM - outside_mm, 0, 1)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, outside_mm.shape).astype(np.float32), 4)
    texture /= texture.std() + 1e-6
    return (shell * brightness * (1 + 0.15 * texture)).astype(np.float32)


def rician(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise: what a scanner's background looks like."""
    return np.hypot(image + rng.normal(0, sd, image.shape), rng.normal(0, sd, image.shape)).astype(np.float32)


def with_skull(image: np.ndarray, brain: np.ndarray, grid: Grid, *, brightness: float = 1.5,
               seed: int = 0) -> np.ndarray:
    """A skull-stripped image with a synthetic scalp shell and noisy background added."""
    rng = np.random.default_rng(seed)
    level = float(np.median(image[brain]))
    outside = ndimage.distance_transform_edt(~brain, sampling=grid.spacing)
    return rician(image + scalp(outside, level * brightness, rng), NOISE * level, rng)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def unpack_dicom(shared_data: Path, into: Path) -> Path:
    """The SAG-anon DICOM series unpacked into `into`; returns the series folder."""
    import tarfile

    folder = into / "dicom" / "SAG-anon"
    if not folder.is_dir():
        with tarfile.open(shared_data / "dicom" / "SAG-anon.tar.xz") as archive:
            archive.extractall(into, filter="data")
    return folder


_SHARED: dict[tuple[Path, str], object] = {}


def shared_raw_case(case_dir: Path, root: Path) -> RawCase:
    """One 2 mm raw case per test session (the builder takes seconds): built once, then reused."""
    key = (root, "raw")
    if key not in _SHARED:
        _SHARED[key] = make_raw_case(case_dir, root / "raw", downsample=2)
    return _SHARED[key]  # type: ignore[return-value]


def shared_prepared(case_dir: Path, root: Path) -> tuple[RawCase, object, list[tuple[float, str]]]:
    """(the raw case, its PreparedStudy at 2 mm with images kept, the progress reports), once a session."""
    from brainseg_gui.core.prepare import prepare_study

    key = (root, "prepared")
    if key not in _SHARED:
        raw = shared_raw_case(case_dir, root)
        reports: list[tuple[float, str]] = []
        prepared = prepare_study(root / "raw", root / "prepared", resolution_mm=2.0, keep_images=True,
                                 progress=lambda fraction, message: reports.append((fraction, message)))
        _SHARED[key] = (raw, prepared, reports)
    return _SHARED[key]  # type: ignore[return-value]


def _thick_grid(grid: Grid, slice_mm: float) -> Grid:
    """The same field of view with slices `slice_mm` thick along the third axis."""
    step = slice_mm / grid.spacing[2]
    count = int(np.floor((grid.shape[2] - 1) / step)) + 1
    scale = np.diag([1.0, 1.0, step, 1.0])
    return Grid((grid.shape[0], grid.shape[1], count), grid.affine @ scale)


def _reoriented_grid(grid: Grid, axcodes: tuple[str, str, str]) -> Grid:
    transform = ornt.ornt_transform(ornt.io_orientation(grid.affine), ornt.axcodes2ornt(axcodes))
    shape = tuple(int(n) for n in np.array(grid.shape)[transform[:, 0].argsort()])
    return Grid(shape, grid.affine @ ornt.inv_ornt_aff(transform, grid.shape))


def _sample(array: np.ndarray, source: Grid, target: Grid, motion: np.ndarray, *, order: int) -> np.ndarray:
    """out(v) = array at world motion^-1 (target.affine v): the anatomy moved by `motion`."""
    voxel = np.linalg.inv(source.affine) @ np.linalg.inv(motion) @ target.affine
    return ndimage.affine_transform(array, voxel[:3, :3], offset=voxel[:3, 3], output_shape=target.shape,
                                    order=order, mode="constant", cval=0)
