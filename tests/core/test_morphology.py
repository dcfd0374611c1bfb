"""core/morphology.fill_holes gives scipy's binary_fill_holes answer exactly (it replaces it for speed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from brainseg_gui.core.morphology import fill_holes


@pytest.mark.parametrize("shape", [(30, 40, 20), (17, 5, 9), (64, 64), (1, 8, 8), (12,)])
@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_random_masks_match_scipy(shape: tuple[int, ...], density: float) -> None:
    mask = np.random.default_rng(len(shape) * 10 + int(density * 10)).random(shape) < density
    assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_a_closed_shell_is_filled_and_an_open_one_is_not() -> None:
    shell = np.zeros((9, 9, 9), bool)
    shell[2:7, 2:7, 2:7] = True
    shell[3:6, 3:6, 3:6] = False
    assert fill_holes(shell)[4, 4, 4]
    shell[4, 4, 2] = False  # a channel to the outside
    assert not fill_holes(shell)[4, 4, 4]
    assert fill_holes(np.ones((3, 3, 3), bool)).all() and not fill_holes(np.zeros((3, 3, 3), bool)).any()


def test_real_brain_masks_match_scipy(real_case: Path) -> None:
    from brainseg_gui.core.io import load_study

    study = load_study(real_case)
    for image in study.images.values():
        for mask in (image > 0, image > np.percentile(image[image > 0], 60)):
            assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
