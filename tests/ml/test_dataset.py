"""The training cache (quantisation, soft targets, reuse) and on-device sampling/augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainseg_gui.core.io import load_study
from brainseg_gui.core.labels import to_regions
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml.dataset import (
    IMAGE_SCALE,
    CachedCase,
    CachedCases,
    build_cache,
    dequantise_image,
    load_cache,
    quantise_image,
    read_entry,
)
from brainseg_gui.ml.preprocess import model_shape, prepare, resize_linear
from brainseg_gui.ml.sampling import AugmentConfig, PatchSampler

SHAPE = (48, 48, 40)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("phantoms")
    return [write_phantom_case(root, seed=seed, shape=SHAPE) for seed in (1, 2)]


@pytest.fixture(scope="module")
def cache(phantoms: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_cache(phantoms, tmp_path_factory.mktemp("cache"), 2.0)


def test_quantisation_error_is_at_most_half_a_step_inside_the_range() -> None:
    values = np.linspace(-8, 127 * IMAGE_SCALE, 10001, dtype=np.float32)
    restored = dequantise_image(quantise_image(values)).numpy()
    assert np.abs(restored - values).max() <= IMAGE_SCALE / 2 + 1e-6
    assert quantise_image(np.array([0.0]))[0] == 0  # background stays exactly zero
    assert dequantise_image(quantise_image(np.array([50.0, -50.0]))).tolist() == [127 * IMAGE_SCALE, -8.0]


def test_cache_entries_hold_the_prepared_case_at_the_model_resolution(phantoms, cache) -> None:
    assert [p.name for p in cache] == [f"{p.name}.npz" for p in phantoms]
    study = load_study(phantoms[0])
    prepared = prepare(study)
    size = model_shape(prepared.volume.shape[1:], prepared.spacing, 2.0)
    case_id, image, target, resolution = read_entry(cache[0])
    assert (case_id, resolution) == (study.case_id, 2.0)
    assert image.dtype == np.int8 and image.shape == (4, *size)
    assert target.dtype == np.uint8 and target.shape == (3, *size)
    expected = resize_linear(prepared.volume, size)
    inside = np.abs(expected) < 7.9
    assert np.abs(dequantise_image(image).numpy() - expected)[inside].max() <= IMAGE_SCALE / 2 + 1e-5
    # Soft targets keep each region's volume: sum of fractions x 8 mm^3 ~ 1 mm voxel count.
    labels = prepared.reorientation.apply(study.labels)[prepared.box]
    regions = to_regions(labels, study.label_convention)
    for index in range(3):
        voxels_1mm = int(regions[index].sum())
        assert voxels_1mm > 0
        assert target[index].astype(np.float64).sum() / 255 * 8 == pytest.approx(voxels_1mm, rel=0.05)
    soft = target.astype(np.int16)
    assert np.all(soft[2] <= soft[1] + 1) and np.all(soft[1] <= soft[0] + 1)  # nested


def test_cache_is_reused_and_small(phantoms, cache) -> None:
    stamps = [p.stat().st_mtime_ns for p in cache]
    again = build_cache(phantoms, cache[0].parent, 2.0)
    assert again == cache and [p.stat().st_mtime_ns for p in again] == stamps
    assert all(p.stat().st_size < 200_000 for p in cache)


def test_load_cache_keeps_float_tensors_on_the_device(cache) -> None:
    cases = load_cache(cache, "cpu")
    assert len(cases) == 2 and cases.case_ids[0].startswith("demo-phantom")
    first = cases.cases[0]
    assert first.image.dtype == torch.float32 and first.image.shape[0] == 4
    assert 0.0 <= float(first.target.min()) and float(first.target.max()) <= 1.0
    assert cases.subset([cases.case_ids[1]]).case_ids == [cases.case_ids[1]]


def _sphere_case(size: int = 40) -> CachedCases:
    """Image channel 0 = 2 inside an off-centre ball plus a gradient; target = (image > 1.5)."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    radius = ((grid - torch.tensor([20.0, 16.0, 23.0])[:, None, None, None]) ** 2).sum(0).sqrt()
    image = ((radius < 9).float() * 2 + grid[0] / size + 0.1).repeat(4, 1, 1, 1)
    target = (image[:1] > 1.5).float().repeat(3, 1, 1, 1)
    return CachedCases((CachedCase("ball", image, target, 1.0),), torch.device("cpu"))


def test_spatial_augmentation_keeps_image_and_target_aligned() -> None:
    geometry_only = AugmentConfig(intensity_scale=0, intensity_shift=0, gamma_p=0, noise_p=0)
    sampler = PatchSampler(_sphere_case(), 24, 8, augment=geometry_only, seed=3)
    image, target = sampler.sample()
    assert image.shape == (8, 4, 24, 24, 24) and target.shape == (8, 3, 24, 24, 24)
    agree = ((image[:, 0] > 1.5) == (target[:, 0] > 0.5)).float().mean()
    assert agree > 0.98
    assert float(target[:, 0].mean()) > 0.1  # the patches do contain the ball


def test_patches_are_biased_to_the_tumour_and_seeded() -> None:
    cases = _sphere_case()
    sampler = PatchSampler(cases, 8, 16, tumour_fraction=1.0, seed=5)
    _, target = sampler.sample()
    assert torch.all(target[:, 0, 4, 4, 4] > 0.5)  # every centre on a WT voxel
    again = PatchSampler(cases, 8, 16, tumour_fraction=1.0, seed=5).sample()[1]
    assert torch.equal(target, again)
    other = PatchSampler(cases, 8, 16, tumour_fraction=1.0, seed=6).sample()[1]
    assert not torch.equal(target, other)


def test_full_augmentation_repeats_with_a_seed_and_resumes_from_its_state() -> None:
    cases = _sphere_case()
    first = PatchSampler(cases, 16, 4, augment=AugmentConfig(modality_dropout=0.5), seed=11)
    second = PatchSampler(cases, 16, 4, augment=AugmentConfig(modality_dropout=0.5), seed=11)
    assert all(torch.equal(a, b) for a, b in zip(first.sample(), second.sample()))
    state = {k: v.clone() for k, v in first.state_dict().items()}
    expected = first.sample()
    second.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, second.sample()))


def test_modality_dropout_zeroes_one_or_two_sequences() -> None:
    sampler = PatchSampler(_sphere_case(), 8, 32, augment=AugmentConfig(enabled=False, modality_dropout=1.0),
                           tumour_fraction=1.0, seed=0)
    image, _ = sampler.sample()
    zeroed = (image.abs().amax(dim=(2, 3, 4)) == 0).sum(1)
    assert set(zeroed.tolist()) <= {1, 2} and {1, 2} <= set(zeroed.tolist())


def test_patches_near_the_border_are_zero_padded() -> None:
    cases = _sphere_case(size=12)
    image, _ = PatchSampler(cases, 20, 2, seed=0).sample()  # patch larger than the case
    assert image.shape == (2, 4, 20, 20, 20)
    assert float(image[:, :, 0].abs().max()) == 0.0 or float(image[:, :, -1].abs().max()) == 0.0
