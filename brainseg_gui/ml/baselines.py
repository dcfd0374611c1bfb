"""The paper's comparison networks as 3D generators beside ours: FCN-8s, SegNet, U-Net, DeepLab v1/v2.

Each is a compact, recognisable version of the published design, adapted the same way:
  - input (N, 4, x, y, z), the four z-scored sequences; output (N, 3, x, y, z) LOGITS for the nested
    regions WT, TC, ET (as Generator3D), so training, prediction, post-processing and checkpoints
    treat every network alike (they are registered in `networks.GENERATORS`);
  - 3D convolutions (3^3 where the original has 3x3; FCN's 7x7 fc6 becomes 3^3), BatchNorm after
    every convolution (SegNet has it; for the others it is the same training behaviour as ours);
  - `widths` lists the channels at each resolution level, full resolution first, so the padding
    contract is Generator3D's: x, y, z must be multiples of `networks.divisor(config)` =
    2 ** (len(widths) - 1), which each module also exposes as `.divisor`;
  - widths scaled down so every network has 1.35-1.6 M parameters (ours: 1.40 M), trainable on a CPU
    (see `parameter_table`). No pretrained ImageNet weights (there are none for 4-channel 3D MRI).

Deviations from the originals, all forced by 3D or by size: fewer convolutions per block; FCN
without the 100-voxel input padding and crop layers (same-padding aligns the skips); SegNet without
the fifth pool/unpool pair (nothing between them); DeepLab's atrous rates scaled by 1/3 to our
feature maps (~9-16 voxels a side at stride 8 instead of ~40-65), no CRF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml.networks import GENERATORS, IN_CHANNELS, OUT_CHANNELS


def conv_bn_relu(in_channels: int, out_channels: int, count: int = 1, *, kernel: int = 3,
                 dilation: int = 1) -> nn.Sequential:
    """`count` x (Conv3d -> BatchNorm3d -> ReLU), same padding (dilated when `dilation` > 1)."""
    layers: list[nn.Module] = []
    for index in range(count):
        layers += [
            nn.Conv3d(in_channels if index == 0 else out_channels, out_channels, kernel,
                      padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _check(name: str, widths: Sequence[int], levels: int | None, convs: Sequence[int], blocks: int) -> list[int]:
    sizes = [int(w) for w in widths]
    if (levels is not None and len(sizes) != levels) or (levels is None and len(sizes) < 2) or min(sizes) < 1:
        wanted = f"{levels}" if levels is not None else "at least two"
        raise ModelError(f"{name} widths must list {wanted} positive sizes, got {list(widths)}")
    if len(convs) != blocks or min(int(c) for c in convs) < 1:
        raise ModelError(f"{name} convs must list {blocks} positive counts, got {list(convs)}")
    return sizes


class FCN8s(nn.Module):
    """FCN-8s (Long et al. 2015): VGG-like encoder of five conv blocks each followed by max-pool
    (strides 2..32), fc6/fc7 as convolutions at stride 32, 1^3 score layers on pool3, pool4 and fc7
    fused by learned 2x transposed convolutions (32 -> 16 -> 8), fixed trilinear 8x upsampling.

    widths: five conv blocks + the fc width (6 levels: divisor 32).
    """

    def __init__(self, in_channels: int = IN_CHANNELS, out_channels: int = OUT_CHANNELS,
                 widths: Sequence[int] = (16, 32, 64, 96, 112, 112), convs: Sequence[int] = (1, 1, 2, 2, 2)) -> None:
        super().__init__()
        sizes = _check("FCN-8s", widths, 6, convs, 5)
        self.divisor = 32
        self.blocks = nn.ModuleList()
        previous = in_channels
        for width, count in zip(sizes[:5], convs):
            self.blocks.append(conv_bn_relu(previous, width, int(count)))
            previous = width
        self.pool = nn.MaxPool3d(2)
        self.fc = nn.Sequential(*conv_bn_relu(previous, sizes[5], 1), *conv_bn_relu(sizes[5], sizes[5], 1, kernel=1))
        self.score_fr = nn.Conv3d(sizes[5], out_channels, 1)
        self.score_pool4 = nn.Conv3d(sizes[3], out_channels, 1)
        self.score_pool3 = nn.Conv3d(sizes[2], out_channels, 1)
        self.up2_fr = nn.ConvTranspose3d(out_channels, out_channels, 4, stride=2, padding=1, bias=False)
        self.up2_pool4 = nn.ConvTranspose3d(out_channels, out_channels, 4, stride=2, padding=1, bias=False)

    def output_layers(self) -> list[tuple[nn.Module, float]]:
        # pool3's scores are added last, unchanged; the others pass through the learned 2x up-sampling
        return [(self.score_pool3, 1.0), (self.score_pool4, 0.0), (self.score_fr, 0.0)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pooled = []
        for block in self.blocks:
            x = self.pool(block(x))
            pooled.append(x)
        score = self.up2_fr(self.score_fr(self.fc(x)))  # stride 32 -> 16
        score = self.up2_pool4(score + self.score_pool4(pooled[3]))  # 16 -> 8
        score = score + self.score_pool3(pooled[2])
        return F.interpolate(score, size=size, mode="trilinear", align_corners=False)


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al. 2017): encoder blocks each followed by max-pool that keeps its
    indices; a mirrored decoder up-samples by max-unpooling with those indices (no skip features,
    no learned up-sampling), its last convolution of each block narrowing to the level above.

    widths: one encoder block per level (divisor 2 ** (len(widths) - 1)).
    """

    def __init__(self, in_channels: int = IN_CHANNELS, out_channels: int = OUT_CHANNELS,
                 widths: Sequence[int] = (16, 32, 64, 112), convs: Sequence[int] = (1, 2, 2, 2)) -> None:
        super().__init__()
        sizes = _check("SegNet", widths, None, convs, len(list(widths)))
        counts = [int(c) for c in convs]
        self.divisor = 2 ** (len(sizes) - 1)
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width, count in zip(sizes, counts):
            self.encoders.append(conv_bn_relu(previous, width, count))
            previous = width
        self.pool = nn.MaxPool3d(2, return_indices=True)
        self.unpool = nn.MaxUnpool3d(2)
        self.decoders = nn.ModuleList()
        for level in range(len(sizes) - 1, -1, -1):
            target = sizes[max(level - 1, 0)]
            layers = [*conv_bn_relu(sizes[level], sizes[level], counts[level] - 1)] if counts[level] > 1 else []
            self.decoders.append(nn.Sequential(*layers, *conv_bn_relu(sizes[level], target, 1)))
        self.head = nn.Conv3d(sizes[0], out_channels, 1)

    def output_layers(self) -> list[tuple[nn.Module, float]]:
        return [(self.head, 1.0)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices, sizes = [], []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < len(self.encoders) - 1:
                sizes.append(x.shape)
                x, index = self.pool(x)
                indices.append(index)
        for level, decoder in enumerate(self.decoders):
            if level > 0:
                x = self.unpool(x, indices.pop(), output_size=sizes.pop())
            x = decoder(x)
        return self.head(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): two 3^3 convolutions per level, max-pool down, 2^3 transposed
    convolution up, skip features concatenated, widths doubling; five levels (four poolings) as the
    original. Ours (Generator3D) is of this family, with four levels, deep supervision and D.

    widths: one per level (divisor 2 ** (len(widths) - 1)).
    """

    def __init__(self, in_channels: int = IN_CHANNELS, out_channels: int = OUT_CHANNELS,
                 widths: Sequence[int] = (8, 16, 32, 64, 128)) -> None:
        super().__init__()
        sizes = _check("U-Net", widths, None, [2] * len(list(widths)), len(list(widths)))
        self.divisor = 2 ** (len(sizes) - 1)
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in sizes:
            self.encoders.append(conv_bn_relu(previous, width, 2))
            previous = width
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(len(sizes) - 2, -1, -1):
            self.ups.append(nn.ConvTranspose3d(sizes[level + 1], sizes[level], 2, stride=2))
            self.decoders.append(conv_bn_relu(2 * sizes[level], sizes[level], 2))
        self.head = nn.Conv3d(sizes[0], out_channels, 1)

    def output_layers(self) -> list[tuple[nn.Module, float]]:
        return [(self.head, 1.0)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < len(self.encoders) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class _DeepLabBackbone(nn.Module):
    """DeepLab's modified VGG: blocks 1-3 each max-pooled (stride 8), then pool4/pool5 with stride 1
    (3^3 max-pool, padding 1) and block 5 dilated by 2, so the output stays at stride 8."""

    def __init__(self, in_channels: int, widths: Sequence[int], convs: Sequence[int]) -> None:
        super().__init__()
        sizes = _check("DeepLab", widths, 4, convs, 5)
        counts = [int(c) for c in convs]
        layers: list[nn.Module] = []
        previous = in_channels
        for level in range(3):
            layers += [conv_bn_relu(previous, sizes[level], counts[level]), nn.MaxPool3d(2)]
            previous = sizes[level]
        layers += [conv_bn_relu(previous, sizes[3], counts[3]), nn.MaxPool3d(3, stride=1, padding=1),
                   conv_bn_relu(sizes[3], sizes[3], counts[4], dilation=2), nn.MaxPool3d(3, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        self.width = sizes[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DeepLabV1(nn.Module):
    """DeepLab v1 LargeFOV (Chen et al. 2015): the stride-8 atrous VGG backbone, fc6 a 3^3 convolution
    with a large dilation (12 in the paper, `fov_dilation` here), fc7 1^3, fc8 scores, trilinear 8x
    up-sampling of the scores. No dense CRF.

    widths: the four backbone levels (strides 1, 2, 4, 8; block 5 shares the last): divisor 8.
    """

    def __init__(self, in_channels: int = IN_CHANNELS, out_channels: int = OUT_CHANNELS,
                 widths: Sequence[int] = (16, 32, 64, 96), convs: Sequence[int] = (1, 1, 2, 2, 2),
                 fc_width: int = 96, fov_dilation: int = 4) -> None:
        super().__init__()
        self.divisor = 8
        self.backbone = _DeepLabBackbone(in_channels, widths, convs)
        self.fc = nn.Sequential(*conv_bn_relu(self.backbone.width, fc_width, 1, dilation=int(fov_dilation)),
                                *conv_bn_relu(fc_width, fc_width, 1, kernel=1))
        self.score = nn.Conv3d(fc_width, out_channels, 1)

    def output_layers(self) -> list[tuple[nn.Module, float]]:
        return [(self.score, 1.0)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        return F.interpolate(self.score(self.fc(self.backbone(x))), size=size, mode="trilinear", align_corners=False)


class DeepLabV2(nn.Module):
    """DeepLab v2 (Chen et al. 2018), VGG variant with ASPP: the stride-8 atrous backbone, then
    atrous spatial pyramid pooling, parallel fc6 (3^3 dilated by each rate) -> fc7 (1^3) -> fc8
    branches whose score maps are summed; trilinear 8x up-sampling. Rates (6, 12, 18, 24) of ASPP-L
    become `rates` here. No dense CRF.

    widths: the four backbone levels: divisor 8.
    """

    def __init__(self, in_channels: int = IN_CHANNELS, out_channels: int = OUT_CHANNELS,
                 widths: Sequence[int] = (16, 32, 64, 96), convs: Sequence[int] = (1, 1, 2, 2, 2),
                 fc_width: int = 48, rates: Sequence[int] = (2, 4, 6, 8)) -> None:
        super().__init__()
        if not rates or min(int(r) for r in rates) < 1:
            raise ModelError(f"DeepLab v2 rates must be positive dilations, got {list(rates)}")
        self.divisor = 8
        self.backbone = _DeepLabBackbone(in_channels, widths, convs)
        self.branches = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(self.backbone.width, fc_width, 1, dilation=int(rate)),
                          *conv_bn_relu(fc_width, fc_width, 1, kernel=1), nn.Conv3d(fc_width, out_channels, 1))
            for rate in rates
        )

    def output_layers(self) -> list[tuple[nn.Module, float]]:
        # the branches' scores are summed: each carries an equal share
        return [(cast(nn.Sequential, branch)[-1], 1.0 / len(self.branches)) for branch in self.branches]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        features = self.backbone(x)
        score = torch.stack([branch(features) for branch in self.branches]).sum(0)
        return F.interpolate(score, size=size, mode="trilinear", align_corners=False)


#: Architecture name (a card's `architecture`) -> constructor; merged into networks.GENERATORS.
BASELINES: dict[str, type[nn.Module]] = {
    "fcn8s": FCN8s,
    "segnet": SegNet,
    "unet": UNet,
    "deeplabv1": DeepLabV1,
    "deeplabv2": DeepLabV2,
}

GENERATORS.update(BASELINES)

#: Each baseline's default config (what a card records): the constructor defaults, made explicit.
BASELINE_CONFIGS: dict[str, dict[str, Any]] = {
    "fcn8s": {"widths": [16, 32, 64, 96, 112, 112], "convs": [1, 1, 2, 2, 2]},
    "segnet": {"widths": [16, 32, 64, 112], "convs": [1, 2, 2, 2]},
    "unet": {"widths": [8, 16, 32, 64, 128]},
    "deeplabv1": {"widths": [16, 32, 64, 96], "convs": [1, 1, 2, 2, 2], "fc_width": 96, "fov_dilation": 4},
    "deeplabv2": {"widths": [16, 32, 64, 96], "convs": [1, 1, 2, 2, 2], "fc_width": 48, "rates": [2, 4, 6, 8]},
}
BASELINE_CONFIGS = {name: {"in_channels": IN_CHANNELS, "out_channels": OUT_CHANNELS, **config}
                    for name, config in BASELINE_CONFIGS.items()}


def parameter_table() -> list[tuple[str, int, int]]:
    """(architecture, parameters, divisor) of ours (DEFAULT_CONFIG) and every baseline's default."""
    from brainseg_gui.ml.networks import DEFAULT_CONFIG, build_generator, divisor, parameter_count

    rows = [("generator3d", parameter_count(build_generator("generator3d", DEFAULT_CONFIG)), divisor(DEFAULT_CONFIG))]
    for name, config in BASELINE_CONFIGS.items():
        rows.append((name, parameter_count(build_generator(name, config)), divisor(config)))
    return rows
