"""The GAN's losses: L_rec (per-region BCE, optional soft Dice, deep supervision) and L_adv.

G minimises L_adv(D(image, G(image)) -> "real") + lambda * L_rec; D minimises the BCE of telling
(image, expert target) from (image, sigmoid(G(image)).detach()).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Weights of the deep-supervision outputs: full resolution first, each coarser level halved.
DEEP_SUPERVISION_DECAY = 0.5


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample and region, averaged. (N, R, ...) logits, soft targets in [0, 1].

    `eps` (voxels) keeps regions absent from a patch from dominating: an empty target with an empty
    prediction scores 1.
    """
    probabilities = torch.sigmoid(logits.float())
    target = target.float()
    dims = tuple(range(2, logits.ndim))
    overlap = (probabilities * target).sum(dims)
    total = probabilities.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * overlap + eps) / (total + eps)).mean()


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, *, dice: bool = False) -> torch.Tensor:
    """Per-region, per-voxel BCE with logits against soft targets (+ soft Dice when `dice`)."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    if dice:
        loss = loss + soft_dice_loss(logits, target)
    return loss


def deep_supervision_loss(outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, *,
                          dice: bool = False) -> torch.Tensor:
    """L_rec over the generator's outputs: one tensor, or [full, coarser, ...] (targets area-pooled)."""
    if isinstance(outputs, torch.Tensor):
        return reconstruction_loss(outputs, target, dice=dice)
    total = outputs[0].new_zeros((), dtype=torch.float32)
    norm = 0.0
    for level, logits in enumerate(outputs):
        weight = DEEP_SUPERVISION_DECAY ** level
        size = (int(logits.shape[2]), int(logits.shape[3]), int(logits.shape[4]))
        scaled = target if logits.shape[2:] == target.shape[2:] else F.adaptive_avg_pool3d(target, size)
        total = total + weight * reconstruction_loss(logits, scaled, dice=dice)
        norm += weight
    return total / norm


def adversarial_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G wants D to call its segmentations expert-made: BCE(D(fake), 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's BCE on real (1) vs generated (0) patches, the two halves averaged."""
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32))
    return 0.5 * (real + fake)
