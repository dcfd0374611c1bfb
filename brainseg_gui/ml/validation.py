"""Validation during training: whole-crop forward passes at the model's resolution, Dice per region.

Cheap on purpose (no resampling to 1 mm, no sliding window): it ranks epochs and tunes the small-ET
threshold. The numbers a user should trust come from `brainseg predict` + the metrics on 1 mm grids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainseg_gui.core.dice import dice
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.ml.dataset import CachedCases
from brainseg_gui.ml.postprocess import make_nested


@dataclass(frozen=True)
class ValidationResult:
    """Mean Dice per region over the cases, per-case Dice, and the binary predictions/targets."""

    dice: dict[str, float]
    per_case: dict[str, dict[str, float]]
    predictions: list[np.ndarray] = field(repr=False)
    targets: list[np.ndarray] = field(repr=False)

    @property
    def mean_dice(self) -> float:
        return float(np.mean(list(self.dice.values())))

    def dice_postprocessed(self, et_min_voxels: int, resolution_mm: float) -> dict[str, float]:
        """Mean Dice per region after relabelling a total ET under `et_min_voxels` (1 mm^3) as TC."""
        threshold = round(et_min_voxels / resolution_mm**3) if et_min_voxels else 0
        scores: dict[str, list[float]] = {name: [] for name in REGIONS}
        for prediction, target in zip(self.predictions, self.targets):
            regions = prediction.copy()
            if 0 < regions[2].sum() < threshold:
                regions[2] = False
            for index, name in enumerate(REGIONS):
                scores[name].append(dice(regions[index], target[index]))
        return {name: round(float(np.mean(values)), 4) for name, values in scores.items()}


def pad_to_multiple(volume: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(N, C, x, y, z) zero-padded at the far end of each axis to multiples; returns the old size."""
    size = tuple(volume.shape[-3:])
    pads = [(-n) % multiple for n in size]
    if any(pads):
        volume = F.pad(volume, [0, pads[2], 0, pads[1], 0, pads[0]])
    return volume, size  # type: ignore[return-value]


@torch.inference_mode()
def predict_regions(generator: nn.Module, image: torch.Tensor, *, amp: torch.dtype | None = None,
                    multiple: int = 8) -> torch.Tensor:
    """(4, x, y, z) -> (3, x, y, z) probabilities from one whole-volume forward pass."""
    padded, size = pad_to_multiple(image[None], multiple)
    with torch.autocast(image.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        logits = generator(padded)
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    return torch.sigmoid(logits.float()[0, :, : size[0], : size[1], : size[2]])


def evaluate(generator: nn.Module, cases: CachedCases, *, amp: torch.dtype | None = None) -> ValidationResult:
    """Dice per region (threshold 0.5, inside the brain, nested) on each case's whole crop; restores train mode."""
    was_training = generator.training
    generator.eval()
    multiple = int(getattr(generator, "divisor", 16))
    per_case: dict[str, dict[str, float]] = {}
    predictions, targets = [], []
    try:
        for case in cases.cases:
            probabilities = predict_regions(generator, case.image, amp=amp, multiple=multiple)
            # The predictor's rule, so training curves and `brainseg predict` agree: nothing outside the
            # brain (zero in every sequence), then ET in TC in WT by growing the outer regions.
            brain = fill_holes((case.image != 0).any(dim=0).cpu().numpy())
            prediction = make_nested((probabilities > 0.5).cpu().numpy() & brain[None])
            target = (case.target > 0.5).cpu().numpy()
            per_case[case.case_id] = {name: round(dice(prediction[i], target[i]), 4)
                                      for i, name in enumerate(REGIONS)}
            predictions.append(prediction)
            targets.append(target)
    finally:
        generator.train(was_training)
    mean = {name: round(float(np.mean([scores[name] for scores in per_case.values()])), 4) for name in REGIONS}
    return ValidationResult(dice=mean, per_case=per_case, predictions=predictions, targets=targets)


def tune_postprocess(result: ValidationResult, resolution_mm: float,
                     candidates: Sequence[int] | None = None) -> int:
    """The small-ET threshold (1 mm^3 voxels) that maximises mean ET Dice on the validation cases."""
    from brainseg_gui.ml.postprocess import ET_CANDIDATES, tune_et_threshold

    choice = tune_et_threshold(result.predictions, result.targets, candidates or ET_CANDIDATES,
                               voxel_volumes_mm3=[resolution_mm**3] * len(result.predictions))
    return int(choice.min_voxels)
