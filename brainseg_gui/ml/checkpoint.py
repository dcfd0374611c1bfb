"""A model directory: generator weights in safetensors plus a JSON model card. No pickle, ever.

    MODEL_DIR/
      weights.safetensors   the generator's state dict (float32, or float16 when large)
      card.json             ModelCard: architecture + config, normalisation, regions, training, metrics

The model version is the first 12 hex digits of the sha256 of the weights file's bytes: written into
the card on save, recomputed and checked on load, so a card can never describe other weights.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from brainseg_gui.core.atomic import FileSet, write_atomic
from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml import model_card
from brainseg_gui.ml.model_card import (
    CARD_FILE,
    FLOAT16_ABOVE_BYTES,
    WEIGHTS_FILE,
    ModelCard,
    checked_weights,
    content_hash,
)
from brainseg_gui.ml.networks import build_generator, check_config, expected_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A checked model: its card and its generator in eval mode on `device`."""

    card: ModelCard
    generator: nn.Module
    directory: Path
    device: torch.device


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write one file all-or-nothing (core.atomic.write_atomic; kept for the ml modules that call it)."""
    write_atomic(Path(path), data)


def weights_bytes(generator: nn.Module, *, dtype: torch.dtype | None = None) -> bytes:
    """The generator's state dict as safetensors bytes (float tensors in `dtype`, auto by size)."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in generator.state_dict().items()}
    if dtype is None:
        float_bytes = sum(t.numel() * 4 for t in state.values() if t.is_floating_point())
        dtype = torch.float16 if float_bytes > FLOAT16_ABOVE_BYTES else torch.float32
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in state.items()}
    # One metadata key only: safetensors writes its metadata map in hash order, so two keys could
    # swap places between processes and change the content hash of identical weights.
    return save_safetensors_bytes(state, metadata={"format": "pt"})


def save_model(model_dir: Path, generator: nn.Module, card: ModelCard, *,
               dtype: torch.dtype | None = None) -> ModelCard:
    """Write weights + card atomically; returns the card with `version` and `created` filled in."""
    model_dir = Path(model_dir)
    data = weights_bytes(generator, dtype=dtype)
    card = card.replace(
        version=content_hash(data),
        created=card.created or datetime.now(UTC).isoformat(timespec="seconds"),
    )
    with FileSet() as files:  # weights and card appear together, or neither is replaced
        files.add(model_dir / WEIGHTS_FILE, data)
        files.add(model_dir / CARD_FILE, json.dumps(card.to_dict(), indent=2) + "\n")
    log.info("saved model %s to %s", card.version, model_dir)
    return card


def read_card(model_dir: Path) -> ModelCard:
    """The card of a model directory, checked, its network's config included (no weights loaded)."""
    card = model_card.read_card(model_dir)
    check_network(card, Path(model_dir) / CARD_FILE)
    return card


def check_network(card: ModelCard, source: Path | str) -> None:
    """The card's architecture is one BrainSeg builds and its config lies within the networks' limits."""
    try:
        check_config(card.architecture, card.config)
    except ModelError as error:
        raise ModelError(f"{source}: {error}") from None


def load_model(model_dir: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Check the directory, card, hash and tensor shapes; rebuild the generator from the card only.

    Everything is checked before the network is built (`check_model`), so a card asking for an
    absurd size, or one that does not fit its weights, is refused without allocating anything.
    """
    model_dir = Path(model_dir)
    card, data = _checked(model_dir)
    weights_path = model_dir / WEIGHTS_FILE
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ModelError(f"{weights_path} is not a readable safetensors file: {error}") from error
    generator = build_generator(card.architecture, card.config)
    _check_state({k: v.shape for k, v in generator.state_dict().items()},
                 {k: v.shape for k, v in state.items()}, weights_path)
    expected = generator.state_dict()
    generator.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    target = torch.device(device)
    generator.to(target).eval()
    return LoadedModel(card=card, generator=generator, directory=model_dir, device=target)


def check_model(model_dir: Path) -> ModelCard:
    """The card of a model directory whose weights fit it (hash, tensor names and shapes), checked
    without building the network or reading the tensors; ModelError naming the first problem."""
    return _checked(Path(model_dir))[0]


def _checked(model_dir: Path) -> tuple[ModelCard, bytes]:
    card = read_card(model_dir)
    try:
        expected = expected_state(card.architecture, card.config)  # shapes only: nothing allocated
    except ModelError as error:
        raise ModelError(f"{model_dir / CARD_FILE}: {error}") from None
    data = checked_weights(model_dir, card)
    _check_state(expected, _header_shapes(data, model_dir / WEIGHTS_FILE), model_dir / WEIGHTS_FILE)
    return card, data


def _header_shapes(data: bytes, source: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in safetensors bytes, from the header alone (nothing allocated)."""
    try:
        (length,) = struct.unpack_from("<Q", data, 0)
        if length > len(data) - 8:
            raise ValueError(f"the header claims {length} bytes, the file has {len(data)}")
        header = json.loads(data[8:8 + length].decode("utf-8"))
        return {name: tuple(int(n) for n in entry["shape"])
                for name, entry in header.items() if name != "__metadata__"}
    except (struct.error, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise ModelError(f"{source} is not a readable safetensors file: {error}") from None


def _check_state(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, tuple[int, ...]],
                 source: Path) -> None:
    """Name every missing, unexpected or wrongly shaped tensor (name -> shape on both sides)."""
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    wrong = [f"{name} {tuple(state[name])} (expected {tuple(shape)})"
             for name, shape in expected.items() if name in state and tuple(state[name]) != tuple(shape)]
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong[:8])}{' ...' if len(wrong) > 8 else ''}")
    if problems:
        raise ModelError(f"{source} does not fit the card's architecture (widths, channels, depth): "
                         f"{'; '.join(problems)}")
