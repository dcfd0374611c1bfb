"""Patch sampling and augmentation in batch on the training device (so a GPU is never starved).

Every random number comes from one CPU `torch.Generator` (seeded, saved in checkpoints), except the
per-voxel noise, which is drawn on the device from a seed the CPU generator gives. So a fixed seed
repeats a run, and resuming restores the sampler exactly.

Per batch: pick cases and centres (a `tumour_fraction` share centred on a WT voxel, the rest on
any brain voxel), cut a crop around each (zero-padded at the borders), then in one
`grid_sample` rotate (+-rotate_deg about all three axes), flip (each axis) and scale it down to the
patch; then per-channel intensity scale/shift, gamma, noise, and modality dropout (one or two
sequences zeroed, as a missing sequence is at inference).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from brainseg_gui.ml.dataset import CachedCases


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; `enabled=False` gives plain crops (modality dropout still applies)."""

    enabled: bool = True
    rotate_deg: float = 15.0
    flip: bool = True
    scale: tuple[float, float] = (0.9, 1.1)
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    gamma_p: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_p: float = 0.2
    noise_sigma: float = 0.1
    modality_dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) radians about the three axes -> (B, 3, 3) rotation matrices Rz @ Ry @ Rx."""
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def stack(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    rx = stack([[one, zero, zero], [zero, cos[:, 0], -sin[:, 0]], [zero, sin[:, 0], cos[:, 0]]])
    ry = stack([[cos[:, 1], zero, sin[:, 1]], [zero, one, zero], [-sin[:, 1], zero, cos[:, 1]]])
    rz = stack([[cos[:, 2], -sin[:, 2], zero], [sin[:, 2], cos[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


class PatchSampler:
    """Draws (image (B, 4, *patch), target (B, 3, *patch)) batches from cached cases on their device."""

    def __init__(self, cases: CachedCases, patch_size: int | tuple[int, int, int], batch_size: int, *,
                 augment: AugmentConfig | None = None, tumour_fraction: float = 2 / 3, seed: int = 0) -> None:
        if len(cases) == 0:
            raise ValueError("no cases to sample from")
        self.cases = cases
        self.patch = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(patch_size)
        self.batch_size = int(batch_size)
        self.augment = augment or AugmentConfig(enabled=False)
        self.tumour_fraction = float(tumour_fraction)
        self.generator = torch.Generator().manual_seed(int(seed))
        # Candidate centres per case, as flat indices on the CPU (drawing them needs no device sync).
        self._tumour = [torch.nonzero(c.target[0].flatten() > 0.5).flatten().cpu() for c in cases.cases]
        self._brain = [torch.nonzero(c.image.abs().amax(0).flatten() > 0).flatten().cpu() for c in cases.cases]
        self.crop = self._crop_size()

    def _crop_size(self) -> tuple[int, int, int]:
        """Crop big enough that a rotated, scaled-up patch stays inside it (S - P even: exact centring)."""
        if not self.augment.enabled:
            return self.patch  # type: ignore[return-value]
        angle = math.radians(self.augment.rotate_deg)
        grow = max(self.augment.scale[1], 1.0) * (math.cos(angle) + 2 * math.sin(angle))
        sizes = []
        for p in self.patch:
            s = max(math.ceil(p * grow), p)
            sizes.append(s + ((s - p) % 2))
        return (sizes[0], sizes[1], sizes[2])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = self.generator
        count = len(self.cases)
        crops = []
        for _ in range(self.batch_size):
            index = int(torch.randint(count, (1,), generator=gen))
            case = self.cases.cases[index]
            pool = self._tumour[index]
            if len(pool) == 0 or float(torch.rand((), generator=gen)) >= self.tumour_fraction:
                pool = self._brain[index] if len(self._brain[index]) else torch.arange(case.target[0].numel())
            flat = int(pool[int(torch.randint(len(pool), (1,), generator=gen))])
            centre = _unravel(flat, tuple(case.target.shape[1:]))
            crops.append(_crop(torch.cat([case.image, case.target]), centre, self.crop))
        batch = torch.stack(crops)
        if self.augment.enabled:
            batch = self._spatial(batch)
        image, target = batch[:, :4], batch[:, 4:].clamp(0.0, 1.0)
        if self.augment.enabled:
            image = self._intensity(image)
        if self.augment.modality_dropout > 0:
            image = self._drop_modalities(image)
        return image.contiguous(), target.contiguous()

    def _spatial(self, batch: torch.Tensor) -> torch.Tensor:
        """Rotate, flip and scale each crop about its centre, resampled to the patch size."""
        gen, size, aug = self.generator, batch.shape[0], self.augment
        angles = _uniform(gen, (size, 3), -math.radians(aug.rotate_deg), math.radians(aug.rotate_deg))
        flips = torch.where(torch.rand((size, 3), generator=gen) < 0.5, -1.0, 1.0) if aug.flip \
            else torch.ones(size, 3)
        scales = _uniform(gen, (size, 1), aug.scale[0], aug.scale[1])
        # affine_grid works in normalised (W, H, D) = (z, y, x) order; rotate in voxel units.
        patch = torch.tensor(self.patch[::-1], dtype=torch.float32)
        crop = torch.tensor(self.crop[::-1], dtype=torch.float32)
        linear = rotation_matrices(angles) * (flips * scales)[:, None, :]
        linear = torch.diag(1.0 / crop)[None] @ linear @ torch.diag(patch)[None]
        theta = torch.cat([linear, torch.zeros(size, 3, 1)], dim=2).to(batch.device)
        grid = F.affine_grid(theta, [size, batch.shape[1], *self.patch], align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _intensity(self, image: torch.Tensor) -> torch.Tensor:
        """Per-channel scale/shift, gamma and noise, inside the brain only (outside stays 0)."""
        gen, aug = self.generator, self.augment
        size, channels = image.shape[:2]
        device = image.device
        brain = (image.abs().amax(1, keepdim=True) > 0).to(image.dtype)
        scale = _uniform(gen, (size, channels, 1, 1, 1), 1 - aug.intensity_scale, 1 + aug.intensity_scale)
        shift = _uniform(gen, (size, channels, 1, 1, 1), -aug.intensity_shift, aug.intensity_shift)
        image = image * scale.to(device) + shift.to(device)
        use_gamma = (torch.rand((size, channels, 1, 1, 1), generator=gen) < aug.gamma_p).to(device)
        gamma = _uniform(gen, (size, channels, 1, 1, 1), *aug.gamma_range).to(device)
        low = image.amin(dim=(2, 3, 4), keepdim=True)
        span = (image.amax(dim=(2, 3, 4), keepdim=True) - low).clamp_min(1e-6)
        gammaed = ((image - low) / span).clamp(0, 1) ** gamma * span + low
        image = torch.where(use_gamma, gammaed, image)
        use_noise = (torch.rand((size, 1, 1, 1, 1), generator=gen) < aug.noise_p).to(device)
        sigma = _uniform(gen, (size, 1, 1, 1, 1), 0.0, aug.noise_sigma).to(device)
        noise_seed = int(torch.randint(2**62, (1,), generator=gen))
        device_gen = torch.Generator(device=device).manual_seed(noise_seed)
        noise = torch.randn(image.shape, generator=device_gen, device=device, dtype=image.dtype)
        image = image + noise * sigma * use_noise
        return image * brain

    def _drop_modalities(self, image: torch.Tensor) -> torch.Tensor:
        """With probability p per sample, zero one or two of the four sequences."""
        gen = self.generator
        size, channels = image.shape[:2]
        keep = torch.ones(size, channels)
        drop = torch.rand(size, generator=gen) < self.augment.modality_dropout
        how_many = 1 + (torch.rand(size, generator=gen) < 0.5).long()
        order = torch.argsort(torch.rand(size, channels, generator=gen), dim=1)
        for b in range(size):
            if drop[b]:
                keep[b, order[b, : int(how_many[b])]] = 0.0
        return image * keep.to(image.device)[:, :, None, None, None]


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, int, int]:
    x, rest = divmod(flat, shape[1] * shape[2])
    y, z = divmod(rest, shape[2])
    return x, y, z


def _crop(volume: torch.Tensor, centre: tuple[int, int, int], size: tuple[int, int, int]) -> torch.Tensor:
    """(C, X, Y, Z) -> (C, *size) centred on `centre`, zero-padded where it leaves the volume."""
    slices, pads = [], []
    for c, s, n in zip(centre, size, volume.shape[1:]):
        start = c - s // 2
        low, high = max(start, 0), min(start + s, n)
        slices.append(slice(low, high))
        pads.append((low - start, start + s - high))
    piece = volume[(slice(None), *slices)]
    if any(p for pair in pads for p in pair):
        piece = F.pad(piece, [p for pair in reversed(pads) for p in pair])
    return piece
