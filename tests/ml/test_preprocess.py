"""ml/preprocess.resize_linear is torch's trilinear resampling (align_corners=False) without torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainseg_gui.ml.preprocess import resize_linear


@pytest.mark.parametrize(("shape", "size"), [
    ((3, 40, 47, 31), (60, 70, 46)),   # up, as the logits go back to the crop
    ((4, 61, 58, 47), (41, 39, 31)),   # down, as a 1 mm crop goes to the model's 1.5 mm
    ((2, 9, 1, 12), (5, 3, 12)),       # one axis of one voxel, one unchanged
    ((1, 2, 5, 3), (7, 5, 1)),
])
def test_resize_linear_matches_torch_trilinear(shape: tuple[int, ...], size: tuple[int, int, int]) -> None:
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(array)[None], size=size, mode="trilinear", align_corners=False)[0]
    got = resize_linear(array, size)
    assert got.shape == (shape[0], *size) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-4)


def test_resize_linear_leaves_the_input_alone() -> None:
    array = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    before = array.copy()
    assert resize_linear(array, (4, 6, 8)).shape == (1, 4, 6, 8)
    np.testing.assert_array_equal(array, before)
    np.testing.assert_array_equal(resize_linear(array, (2, 3, 4)), before)
