"""A model directory: generator weights in safetensors plus a JSON model card. No pickle, ever.

    MODEL_DIR/
      weights.safetensors   the generator's state dict (float32, or float16 when large)
      card.json             ModelCard: architecture + config, normalisation, regions, training, metrics

The model version is the first 12 hex digits of the sha256 of the weights file's bytes: written into
the card on save, recomputed and checked on load, so a card can never describe other weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from brainseg_gui.core.errors import ModelError
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.ml.networks import GENERATORS, build_generator

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
#: Weights files that would need unpickling to read; found instead of safetensors, they are refused.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
#: Above this many bytes in float32 the weights are stored as float16 (the shipped size budget).
FLOAT16_ABOVE_BYTES = 20 * 1024 * 1024


#: ml/preprocess.py's settings, repeated here so reading a card needs no nibabel (a test keeps them equal).
CLIP_PERCENTILES = (0.5, 99.5)
BOX_MARGIN = 4


def default_normalisation() -> dict[str, Any]:
    """What ml/preprocess.py does to an input, recorded so a card says how its inputs were made."""
    return {
        "orientation": "RAS",
        "crop": f"brain bounding box (any sequence non-zero) + {BOX_MARGIN} voxels",
        "clip_percentiles": list(CLIP_PERCENTILES),
        "scaling": "per-sequence z-score inside the brain after clipping; zero outside",
        "channels": ["t1", "t1ce", "t2", "flair"],
        "resample": "trilinear to resolution_mm isotropic",
    }


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild, run and judge a generator; `card.json` on disk.

    `version` is the weights' content hash (set by `save_model`, checked by `load_model`).
    """

    architecture: str
    config: Mapping[str, Any]
    resolution_mm: float
    regions: tuple[str, ...] = REGIONS
    label_convention: str = "brats"
    normalisation: Mapping[str, Any] = field(default_factory=default_normalisation)
    postprocess: Mapping[str, Any] = field(default_factory=lambda: {"threshold": 0.5, "et_min_voxels": 0})
    modality_dropout: bool = False
    inference: Mapping[str, Any] = field(default_factory=dict)  # optional predictor settings (roi, overlap)
    training: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    version: str = ""
    description: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "card") -> ModelCard:
        """Validate and build; missing keys, wrong types or unknown architectures raise ModelError."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: expected a JSON object, got {type(data).__name__}")
        required = ("format_version", "architecture", "config", "resolution_mm", "regions", "version")
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelError(f"{source}: missing keys {missing}")
        if data["format_version"] != FORMAT_VERSION:
            raise ModelError(f"{source}: format_version {data['format_version']!r} is not supported "
                             f"(this program reads {FORMAT_VERSION})")
        if data["architecture"] not in GENERATORS:
            raise ModelError(f"{source}: unknown architecture {data['architecture']!r}; "
                             f"known: {sorted(GENERATORS)}")
        if not isinstance(data["config"], Mapping):
            raise ModelError(f"{source}: 'config' must be an object, got {data['config']!r}")
        if tuple(data["regions"]) != REGIONS:
            raise ModelError(f"{source}: regions {data['regions']!r} are not {list(REGIONS)}")
        try:
            resolution = float(data["resolution_mm"])
        except (TypeError, ValueError):
            raise ModelError(f"{source}: resolution_mm {data['resolution_mm']!r} is not a number") from None
        if not resolution > 0:
            raise ModelError(f"{source}: resolution_mm must be positive, got {resolution}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.warning("%s: ignoring unknown card keys %s", source, unknown)
        values = {key: data[key] for key in known if key in data}
        values["regions"] = tuple(values["regions"])
        values["resolution_mm"] = resolution
        values["modality_dropout"] = bool(values.get("modality_dropout", False))
        return cls(**values)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class LoadedModel:
    """A checked model: its card and its generator in eval mode on `device`."""

    card: ModelCard
    generator: nn.Module
    directory: Path
    device: torch.device


def content_hash(data: bytes) -> str:
    """The model version: the first 12 hex digits of sha256(weights file bytes)."""
    return hashlib.sha256(data).hexdigest()[:12]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
    atomic_write_bytes(model_dir / WEIGHTS_FILE, data)
    atomic_write_bytes(model_dir / CARD_FILE, (json.dumps(card.to_dict(), indent=2) + "\n").encode())
    log.info("saved model %s to %s", card.version, model_dir)
    return card


def read_card(model_dir: Path) -> ModelCard:
    """The card of a model directory, checked (no weights loaded)."""
    model_dir = _checked_dir(Path(model_dir))
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{model_dir} has no {CARD_FILE} (a model directory holds {CARD_FILE} and {WEIGHTS_FILE})")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{card_path} is not valid JSON: {error}") from error
    return ModelCard.from_dict(data, source=str(card_path))


def load_model(model_dir: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Check the directory, card, hash and tensor shapes; rebuild the generator from the card only."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    weights_path = model_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f"; found {pickles}, which would need unpickling: refused" if pickles else ""
        raise ModelError(f"{model_dir} has no {WEIGHTS_FILE}{hint}")
    data = weights_path.read_bytes()
    if data[8:9] != b"{" and (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise ModelError(f"{weights_path} is a pickle/zip torch file, not safetensors: refused (never unpickled)")
    version = content_hash(data)
    if version != card.version:
        raise ModelError(f"{weights_path} has content hash {version}, but the card says version "
                         f"{card.version!r}: the weights and card do not belong together")
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ModelError(f"{weights_path} is not a readable safetensors file: {error}") from error
    generator = build_generator(card.architecture, card.config)
    _check_state(generator, state, weights_path)
    expected = generator.state_dict()
    generator.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    target = torch.device(device)
    generator.to(target).eval()
    return LoadedModel(card=card, generator=generator, directory=model_dir, device=target)


def _checked_dir(model_dir: Path) -> Path:
    if model_dir.is_file():
        if model_dir.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelError(f"{model_dir} is a pickled torch file; BrainSeg loads only a model directory "
                             f"with {CARD_FILE} and {WEIGHTS_FILE} (pickles are never unpickled)")
        raise ModelError(f"{model_dir} is a file; a model is a directory with {CARD_FILE} and {WEIGHTS_FILE}")
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    return model_dir


def _check_state(generator: nn.Module, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Name every missing, unexpected or wrongly shaped tensor."""
    expected = generator.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    wrong = [f"{name} {tuple(state[name].shape)} (expected {tuple(tensor.shape)})"
             for name, tensor in expected.items() if name in state and state[name].shape != tensor.shape]
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong[:8])}{' ...' if len(wrong) > 8 else ''}")
    if problems:
        raise ModelError(f"{source} does not fit the card's architecture: {'; '.join(problems)}")
