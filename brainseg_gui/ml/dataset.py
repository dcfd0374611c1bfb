"""The training cache: each labelled case prepared once, at the model's resolution, small enough to carry.

One compressed `.npz` per case holds
  image   int8 (4, x, y, z): the prepared, z-scored sequences (ml/preprocess.prepare) resampled
          trilinearly to `resolution_mm`, quantised as round(z * 16) clipped to [-128, 127]; so z is
          kept in [-8, 7.94] with an error of at most 1/32 (`IMAGE_SCALE`), and 0 stays exactly 0
          (outside the brain);
  target  uint8 (3, x, y, z): WT, TC, ET soft targets, the area-average of the 1 mm region masks,
          as round(fraction * 255);
  case_id, resolution_mm, format, present (which sequences the case had).
Sixteen BraTS cases at 1.5 mm take ~35 MB (see the helper report), so the whole cache travels to a
GPU machine and lives there as tensors (`load_cache`). Building needs nibabel; loading does not.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress

if TYPE_CHECKING:
    from brainseg_gui.core.study import Study

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
#: z-score units per int8 step of the cached images.
IMAGE_SCALE = 1.0 / 16.0
TARGET_SCALE = 1.0 / 255.0
CACHE_SUFFIX = ".npz"


def quantise_image(volume: np.ndarray) -> np.ndarray:
    """float z-scores -> int8 steps of IMAGE_SCALE (clipped to [-8, 7.94])."""
    return np.clip(np.rint(volume / IMAGE_SCALE), -128, 127).astype(np.int8)


def dequantise_image(stored: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(stored).float() * IMAGE_SCALE


def _load_labelled_study(case_dir: Path) -> Study:
    """A labelled study through core.io (nibabel is imported only here)."""
    from brainseg_gui.core.io import load_study

    study = load_study(case_dir)
    if study.labels is None:
        raise StudyLoadError(f"{case_dir} has no label map; training needs labelled cases")
    return study


def cache_case(case_dir: Path, cache_dir: Path, resolution_mm: float) -> Path:
    """Prepare one labelled case and write its cache file atomically; returns the file."""
    return cache_study(_load_labelled_study(Path(case_dir)), cache_dir, resolution_mm)


def cache_study(study: Study, cache_dir: Path, resolution_mm: float) -> Path:
    """Write a loaded, labelled study's cache file atomically (network input and soft region targets
    at `resolution_mm`); returns the file."""
    from brainseg_gui.core.labels import LabelConvention, to_regions
    from brainseg_gui.ml.checkpoint import atomic_write_bytes
    from brainseg_gui.ml.preprocess import model_shape, prepare, resize_linear

    assert study.labels is not None and study.label_convention is not None  # callers check
    prepared = prepare(study)
    labels = prepared.reorientation.apply(study.labels)[prepared.box]
    regions = to_regions(np.ascontiguousarray(labels), LabelConvention(study.label_convention))
    size = model_shape(prepared.volume.shape[1:], prepared.spacing, resolution_mm)
    with torch.no_grad():
        image = resize_linear(prepared.volume, size)
        target = _area_resize(regions.astype(np.float32), size)
    path = Path(cache_dir) / f"{study.case_id}{CACHE_SUFFIX}"
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        image=quantise_image(image),
        target=np.clip(np.rint(target / TARGET_SCALE), 0, 255).astype(np.uint8),
        case_id=np.array(study.case_id),
        resolution_mm=np.array(float(resolution_mm)),
        format=np.array(CACHE_FORMAT),
        present=np.array(prepared.present, dtype=bool),
    )
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _case_id(path: Path) -> str:
    """The case id a path will load as (its folder name when the case finder cannot tell)."""
    from brainseg_gui.core.cases import find_case

    try:
        return find_case(path).case_id
    except StudyLoadError:
        return path.name


def _is_current(path: Path, resolution_mm: float) -> bool:
    try:
        with np.load(path) as stored:
            return (int(stored["format"]) == CACHE_FORMAT
                    and abs(float(stored["resolution_mm"]) - resolution_mm) < 1e-6)
    except (OSError, KeyError, ValueError):
        return False


def build_cache(case_dirs: Sequence[Path], cache_dir: Path, resolution_mm: float,
                progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> list[Path]:
    """Cache every case (a case folder or one of its files); returns the entry files, in order.

    A case's entry is `<cache_dir>/<case_id>.npz`; an existing entry is reused unless its format or
    resolution differs (delete the folder to force a rebuild after the data changed).
    """
    cache_dir = Path(cache_dir)
    paths: list[Path] = []
    for index, case_dir in enumerate(case_dirs):
        if cancel is not None:
            cancel.raise_if_cancelled()
        case_dir = Path(case_dir)
        existing = cache_dir / f"{_case_id(case_dir)}{CACHE_SUFFIX}"
        if existing.is_file() and _is_current(existing, resolution_mm):
            paths.append(existing)
        else:
            progress(index / max(len(case_dirs), 1), f"caching {case_dir.name}")
            log.info("caching %s at %.2f mm", case_dir, resolution_mm)
            paths.append(cache_case(case_dir, cache_dir, resolution_mm))
    progress(1.0, f"cache ready: {len(paths)} cases")
    return paths


def cached_files(cache_dir: Path) -> list[Path]:
    """Every cache entry in a folder, sorted by name (for training from a carried cache alone)."""
    return sorted(Path(cache_dir).glob(f"*{CACHE_SUFFIX}"))


@dataclass(frozen=True)
class CachedCase:
    """One case on the device: image float32 (4, x, y, z) z-scores, target float32 (3, x, y, z) in [0, 1]."""

    case_id: str
    image: torch.Tensor
    target: torch.Tensor
    resolution_mm: float


@dataclass(frozen=True)
class CachedCases:
    """The training or validation cases, all as tensors on one device."""

    cases: tuple[CachedCase, ...]
    device: torch.device

    @property
    def case_ids(self) -> list[str]:
        return [case.case_id for case in self.cases]

    def __len__(self) -> int:
        return len(self.cases)

    def subset(self, case_ids: Sequence[str]) -> CachedCases:
        wanted = set(case_ids)
        return CachedCases(tuple(c for c in self.cases if c.case_id in wanted), self.device)


def read_entry(path: Path) -> tuple[str, np.ndarray, np.ndarray, float]:
    """(case_id, image int8, target uint8, resolution_mm) of one cache file."""
    try:
        with np.load(path) as stored:
            if int(stored["format"]) != CACHE_FORMAT:
                raise StudyLoadError(f"{path}: cache format {int(stored['format'])}, expected {CACHE_FORMAT}")
            return (str(stored["case_id"]), stored["image"], stored["target"], float(stored["resolution_mm"]))
    except (OSError, KeyError, ValueError) as error:
        raise StudyLoadError(f"{path} is not a readable training cache entry: {error}") from error


def load_cache(paths: Sequence[Path], device: str | torch.device = "cpu") -> CachedCases:
    """Every entry dequantised onto `device` (float32); all must share one resolution."""
    device = torch.device(device)
    cases = []
    for path in paths:
        case_id, image, target, resolution = read_entry(Path(path))
        cases.append(CachedCase(
            case_id=case_id,
            image=dequantise_image(image).to(device),
            target=(torch.from_numpy(target).float() * TARGET_SCALE).to(device),
            resolution_mm=resolution,
        ))
    resolutions = sorted({case.resolution_mm for case in cases})
    if len(resolutions) > 1:
        raise StudyLoadError(f"cache entries mix resolutions {resolutions} mm: {[str(p) for p in paths]}")
    return CachedCases(tuple(cases), device)


def _area_resize(regions: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """(3, x, y, z) 0/1 regions -> (3, *size) soft targets: the share of each output voxel they cover."""
    if tuple(regions.shape[1:]) == tuple(size):
        return regions
    return torch.nn.functional.adaptive_avg_pool3d(torch.from_numpy(regions)[None], size)[0].numpy()

