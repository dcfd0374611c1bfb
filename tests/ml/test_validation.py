"""Training-time validation scores masks by the predictor's rule (inside the brain, outer regions grown)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from brainseg_gui.ml.dataset import CachedCase, CachedCases
from brainseg_gui.ml.validation import evaluate

SHAPE = (8, 8, 8)


class FixedLogits(nn.Module):
    """A 'network' that returns the same logits whatever it is given."""

    divisor = 8

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits[None].expand(image.shape[0], -1, -1, -1, -1)


def _case(target: torch.Tensor) -> CachedCases:
    image = torch.zeros(4, *SHAPE)
    image[:, 2:6, 2:6, 2:6] = 1.0  # the brain: non-zero in every sequence
    return CachedCases(cases=(CachedCase("c1", image, target, 2.0),), device=torch.device("cpu"))


def _logits(regions: np.ndarray) -> torch.Tensor:
    return torch.where(torch.as_tensor(regions), 10.0, -10.0)


def test_a_prediction_outside_the_brain_does_not_count() -> None:
    target = torch.zeros(3, *SHAPE)
    target[:, 3:5, 3:5, 3:5] = 1.0
    predicted = target.numpy() > 0.5
    predicted[:, 0, 0, 0] = True  # background, zero in every sequence
    result = evaluate(FixedLogits(_logits(predicted)), _case(target))
    assert result.dice == {"WT": 1.0, "TC": 1.0, "ET": 1.0}
    assert not result.predictions[0][:, 0, 0, 0].any()


def test_an_enhancing_voxel_outside_the_core_grows_the_core_and_the_whole_tumour() -> None:
    target = torch.zeros(3, *SHAPE)
    target[:, 3:5, 3:5, 3:5] = 1.0
    predicted = target.numpy() > 0.5
    predicted[2, 5, 5, 5] = True  # ET only, inside the brain
    result = evaluate(FixedLogits(_logits(predicted)), _case(target))
    assert result.predictions[0][:, 5, 5, 5].all()  # as `brainseg predict` would label it
    expected = 2 * 8 / (9 + 8)
    assert result.dice == {name: round(expected, 4) for name in ("WT", "TC", "ET")}
