"""Dice, defined once: metrics, validation, threshold tuning and the review of corrections use it.

Its own small module (numpy only) so the viewer's review of corrections does not import
scipy.ndimage at start-up through core.metrics (~0.2 s of a cold start).
"""

from __future__ import annotations

import numpy as np


def dice_from_counts(overlap: int, count_a: int, count_b: int) -> float:
    """Dice from voxel counts, with the BraTS convention that two empty masks agree (1.0).

    Every Dice in BrainSeg goes through it (or through `dice`)."""
    total = count_a + count_b
    return 1.0 if total == 0 else 2.0 * overlap / total


def dice(prediction: np.ndarray, target: np.ndarray) -> float:
    """Dice of two boolean masks of one shape (BraTS convention: both empty -> 1.0)."""
    prediction, target = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    return dice_from_counts(int(np.count_nonzero(prediction & target)), int(np.count_nonzero(prediction)),
                            int(np.count_nonzero(target)))
