"""The GAN's two networks: a 3D U-Net-style generator and a 3D patch discriminator.

Both are rebuilt only from a model card's `config` mapping (`build_generator`, `build_discriminator`),
never from guessed arguments, so a card fully describes the weights it belongs to.

Why this shape: the network runs on the brain crop (~140x175x140 mm) resampled to `resolution_mm`
isotropic, and the predictor upsamples its logits back to 1 mm. One forward pass, measured on the
2-core CPU (torch 2.13, float32, 2 threads, inference_mode, Conv+BN fused, channels_last_3d; the
machine was shared, so +-30%):

    input (1.5 mm ~ 96x120x96, 2 mm ~ 72x88x72)  widths            convs  params   seconds
    72x88x72                                      16,32,64,128      2      1.40 M   0.8-1.8
    72x88x72                                      24,48,96,192      2      3.15 M   1.6-3.7
    72x88x72                                      32,64,128,256     2      5.60 M   2.9-3.8
    96x120x96                                     16,32,64,128      2      1.40 M   1.84-1.89
    96x120x96                                     16,32,64,128      1      0.67 M   1.03
    96x120x96                                     24,48,96,192      2      3.15 M   3.9
    96x128x96                                     16,32,64,128,256  2      5.65 M   1.8-2.1
    112x144x112 (1.25 mm)                         16,32,64,128      2      1.40 M   3.07
    (without channels_last_3d: 72x88x72, 16..128: 2.8 s)

DEFAULT_CONFIG (16..128, two convs a level, deep supervision) at 1.5 mm keeps the network at ~2 s of
the 8 s end-to-end budget (the largest real crop, 112x128x104 padded, ~2.5 s). On an H100 (bf16,
channels_last_3d) one G+D training step on 16 x 64^3 patches takes ~34 ms, ~1000 steps a minute
with sampling and validation; fold 0 of a 4-fold split reached validation Dice (model resolution)
WT 0.87, TC 0.83, ET 0.78 in ~3 minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from brainseg_gui.core.errors import ModelError

#: Channel order of the input: the four sequences (core.study.SEQUENCES).
IN_CHANNELS = 4
#: Output logits, one per nested region (core.labels.REGIONS): WT, TC, ET.
OUT_CHANNELS = 3

#: The widest layer a model card may ask for (the shipped one's widest is 128).
MAX_WIDTH = 1024
#: The most levels (or list entries) a config may give, and the most convolutions a block may repeat.
MAX_LEVELS, MAX_REPEAT, MAX_DILATION = 8, 8, 64
#: The most parameters a card may describe: 100 M, 400 MB in float32 (the shipped model has 1.4 M).
MAX_PARAMETERS = 100_000_000
#: Config key -> (lowest, highest, (fewest, most entries) when it is a list); others: 0..MAX_WIDTH.
_RANGES: dict[str, tuple[int, int, tuple[int, int]]] = {
    "widths": (1, MAX_WIDTH, (2, MAX_LEVELS)),
    "fc_width": (1, MAX_WIDTH, (1, 1)),
    "convs_per_level": (1, MAX_REPEAT, (1, 1)),
    "convs": (1, MAX_REPEAT, (1, MAX_LEVELS)),
    "fov_dilation": (1, MAX_DILATION, (1, 1)),
    "rates": (1, MAX_DILATION, (1, MAX_LEVELS)),
}

#: The default generator: filled in from the CPU measurements (see module docstring).
DEFAULT_CONFIG: dict[str, Any] = {
    "in_channels": IN_CHANNELS,
    "out_channels": OUT_CHANNELS,
    "widths": [16, 32, 64, 128],
    "convs_per_level": 2,
    "down": "pool",
    "deep_supervision": True,
}

#: The default discriminator (a training-time object; it is never shipped).
DEFAULT_DISCRIMINATOR: dict[str, Any] = {
    "in_channels": IN_CHANNELS + OUT_CHANNELS,
    "widths": [16, 32, 64],
}


def _conv_block(in_channels: int, out_channels: int, count: int) -> nn.Sequential:
    """`count` x (Conv3d 3^3 -> BatchNorm3d -> ReLU), the method's basic unit."""
    layers: list[nn.Module] = []
    for index in range(count):
        layers += [
            nn.Conv3d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class Generator3D(nn.Module):
    """Encoder-decoder with skip connections: (N, 4, x, y, z) -> (N, 3, x, y, z) region logits.

    x, y, z must be multiples of `2 ** (len(widths) - 1)` (see `divisor`). Down-sampling by max-pool
    (or a stride-2 convolution), up-sampling by ConvTranspose3d. With `deep_supervision`, training
    mode returns a list [full-resolution logits, coarser logits ...] (each level of the decoder
    below the top, coarsest last); eval mode always returns one tensor.
    """

    def __init__(
        self,
        in_channels: int = IN_CHANNELS,
        out_channels: int = OUT_CHANNELS,
        widths: Sequence[int] = (16, 32, 64, 128),
        convs_per_level: int = 2,
        down: str = "pool",
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ModelError(f"generator widths must list at least two positive sizes, got {widths}")
        if down not in ("pool", "stride"):
            raise ModelError(f"generator 'down' must be 'pool' or 'stride', got {down!r}")
        self.deep_supervision = bool(deep_supervision)
        #: Input sizes must be multiples of this (one halving per level below the top).
        self.divisor = 2 ** (len(widths) - 1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(widths):
            self.encoders.append(_conv_block(previous, width, convs_per_level))
            previous = width
            if level < len(widths) - 1:
                self.downs.append(
                    nn.MaxPool3d(2) if down == "pool"
                    else nn.Sequential(nn.Conv3d(width, width, 2, stride=2, bias=False),
                                       nn.BatchNorm3d(width), nn.ReLU(inplace=True))
                )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.aux_heads = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            self.ups.append(nn.ConvTranspose3d(widths[level + 1], widths[level], 2, stride=2))
            self.decoders.append(_conv_block(2 * widths[level], widths[level], convs_per_level))
            if self.deep_supervision and level > 0:
                self.aux_heads.append(nn.Conv3d(widths[level], out_channels, 1))
        self.head = nn.Conv3d(widths[0], out_channels, 1)

    def output_layers(self) -> list[tuple[nn.Module, float]]:
        """The convolutions whose biases set the logits, each with its share (see `set_output_prior`)."""
        return [(self.head, 1.0), *((aux, 1.0) for aux in self.aux_heads)]  # each aux head has its own loss

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < len(self.downs):
                skips.append(x)
                x = self.downs[level](x)
        aux: list[torch.Tensor] = []
        for index, (up, decoder) in enumerate(zip(self.ups, self.decoders)):
            x = decoder(torch.cat([up(x), skips.pop()], dim=1))
            if self.training and self.deep_supervision and index < len(self.aux_heads):
                aux.append(self.aux_heads[index](x))
        out = self.head(x)
        if self.training and self.deep_supervision:
            return [out, *reversed(aux)]
        return out


class PatchDiscriminator3D(nn.Module):
    """(N, 4 + 3, x, y, z) = concat(image, region probabilities) -> (N, 1, x/2^k, y/2^k, z/2^k) logits.

    Each output voxel judges one receptive-field patch as expert-made (1) or generated (0).
    """

    def __init__(self, in_channels: int = IN_CHANNELS + OUT_CHANNELS, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(int(w) for w in widths):
            layers.append(nn.Conv3d(previous, width, 4, stride=2, padding=1, bias=index == 0))
            if index > 0:
                layers.append(nn.BatchNorm3d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            previous = width
        layers.append(nn.Conv3d(previous, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, regions], dim=1))


#: Architecture name (the card's `architecture`) -> constructor taking the card's config as kwargs.
GENERATORS: dict[str, Callable[..., nn.Module]] = {"generator3d": Generator3D}


def build_generator(architecture: str, config: Mapping[str, Any]) -> nn.Module:
    """The generator a card describes; unknown names, config keys or out-of-range sizes raise
    ModelError naming them, before any weight is allocated (`expected_state` checks on 'meta')."""
    expected_state(architecture, config)
    return _construct(architecture, config)


def expected_state(architecture: str, config: Mapping[str, Any]) -> dict[str, torch.Size]:
    """Name -> shape of every tensor the generator a card describes holds, computed without memory.

    The config is range-checked first (`check_config`), then the network is built on torch's 'meta'
    device (shapes only) and its size checked against MAX_PARAMETERS.
    """
    check_config(architecture, config)
    with torch.device("meta"):
        network = _construct(architecture, config)
    count = parameter_count(network)
    if count > MAX_PARAMETERS:
        raise ModelError(f"config {dict(config)} of {architecture!r} makes {count:,} parameters, more than "
                         f"the {MAX_PARAMETERS:,} BrainSeg builds; not a BrainSeg model")
    return {name: tensor.shape for name, tensor in network.state_dict().items()}


def _construct(architecture: str, config: Mapping[str, Any]) -> nn.Module:
    if architecture not in GENERATORS:
        raise ModelError(f"unknown architecture {architecture!r}; known: {sorted(GENERATORS)}")
    try:
        return GENERATORS[architecture](**dict(config))
    except (TypeError, ValueError) as error:
        raise ModelError(f"config {dict(config)} does not fit architecture {architecture!r}: {error}") from error


def check_config(architecture: str, config: Mapping[str, Any]) -> None:
    """Refuse a card's config whose sizes are missing their type or out of range (see the MAX_ limits)."""
    if architecture not in GENERATORS:
        raise ModelError(f"unknown architecture {architecture!r}; known: {sorted(GENERATORS)}")
    if not isinstance(config, Mapping):
        raise ModelError(f"the config of {architecture!r} must be an object, got {config!r}")
    for key, fixed in (("in_channels", IN_CHANNELS), ("out_channels", OUT_CHANNELS)):
        if key in config and (not _is_int(config[key]) or config[key] != fixed):
            raise ModelError(f"config {key} is {config[key]!r}; BrainSeg's networks take {fixed}")
    for key, value in config.items():
        low, high, lengths = _RANGES.get(key, (0, MAX_WIDTH, (0, MAX_LEVELS)))
        if isinstance(value, (str, bool)) or value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else None
        if values is None:
            if not _is_int(value) or not low <= value <= high:
                raise ModelError(f"config {key} is {value!r}; expected a whole number {low}..{high}")
            continue
        if not lengths[0] <= len(values) <= lengths[1]:
            raise ModelError(f"config {key} lists {len(values)} values; expected {lengths[0]}..{lengths[1]}")
        bad = [v for v in values if not _is_int(v) or not low <= v <= high]
        if bad:
            raise ModelError(f"config {key} holds {bad[:4]!r}; expected whole numbers {low}..{high}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_output_prior(prior: float) -> None:
    if not 0.0 < prior < 1.0:
        raise ModelError(f"the output prior is a probability strictly between 0 and 1, got {prior!r}")


def set_output_prior(model: nn.Module, prior: float) -> None:
    """Start every region's output at probability `prior` (the prior-probability bias of Lin et al. 2017).

    Why: with PyTorch's default init the logits start near 0, i.e. probability 0.5 everywhere, and at
    Adam's 1e-4 an output bias moves about 1e-4 a step: narrow output layers (U-Net and both DeepLabs at
    the experiment's widths) then mark the whole brain as tumour for thousands of steps. Started at a
    small prior, every network begins at "no tumour" and learns where tumour is.
    """
    check_output_prior(prior)
    layers = getattr(model, "output_layers", None)
    if layers is None:
        raise ModelError(f"{type(model).__name__} does not name its output layers; no output prior can be set")
    logit = math.log(prior / (1.0 - prior))
    with torch.no_grad():
        for layer, share in layers():
            layer.bias.fill_(share * logit)


def build_discriminator(config: Mapping[str, Any] | None = None) -> PatchDiscriminator3D:
    """The discriminator for a training run (DEFAULT_DISCRIMINATOR when `config` is None)."""
    merged = dict(DEFAULT_DISCRIMINATOR)
    merged.update(config or {})
    try:
        return PatchDiscriminator3D(**merged)
    except TypeError as error:
        raise ModelError(f"discriminator config {merged} is not valid: {error}") from error


def divisor(config: Mapping[str, Any]) -> int:
    """Input sizes must be multiples of this: 2 ** (number of down-sampling steps)."""
    widths = config.get("widths", DEFAULT_CONFIG["widths"])
    return int(2 ** (len(widths) - 1))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every Conv3d -> BatchNorm3d pair folded into one Conv3d.

    Same outputs (to float rounding), fewer passes over memory on the CPU. Combine with
    `.to(memory_format=torch.channels_last_3d)` on model and input (measured ~1.7x on 2 cores).
    """
    from copy import deepcopy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        merged: list[nn.Module] = []
        index = 0
        while index < len(layers):
            layer = layers[index]
            following = layers[index + 1] if index + 1 < len(layers) else None
            if isinstance(layer, nn.Conv3d) and isinstance(following, nn.BatchNorm3d):
                merged.append(fuse_conv_bn_eval(layer, following))
                index += 2
            else:
                merged.append(layer)
                index += 1
        module._modules.clear()
        for position, layer in enumerate(merged):
            module.add_module(str(position), layer)
    return fused


# The paper's comparison networks (FCN-8s, SegNet, U-Net, DeepLab v1/v2) add themselves to GENERATORS
# when ml/baselines.py is imported; importing it here (last: it imports this module) lets a card naming
# one load wherever a card does.
import brainseg_gui.ml.baselines  # noqa: F401
