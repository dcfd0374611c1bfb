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
import math
import struct
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

from brainseg_gui.core.atomic import FileSet, write_atomic
from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.read_guard import read_small_bytes, read_small_text
from brainseg_gui.ml.networks import GENERATORS, build_generator, check_config, expected_state

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
#: Weights files that would need unpickling to read; found instead of safetensors, they are refused.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
#: Above this many bytes in float32 the weights are stored as float16 (the shipped size budget).
FLOAT16_ABOVE_BYTES = 20 * 1024 * 1024
#: The largest card.json read (the shipped one is ~16 KB).
MAX_CARD_BYTES = 1 << 20
#: The largest weights file read: networks.MAX_PARAMETERS in float32 and some room.
MAX_WEIGHTS_BYTES = 512 << 20
#: Card keys that must be JSON objects, and those that must be text, when present.
_MAPPING_KEYS = ("config", "normalisation", "postprocess", "inference", "training", "validation")
_TEXT_KEYS = ("label_convention", "created", "version", "description")


#: The voxel sizes a card may run at: finer allocates too much, coarser sees no tumour.
MIN_RESOLUTION_MM, MAX_RESOLUTION_MM = 0.3, 10.0
#: The largest sliding window side a card may ask for, in voxels (512^3 x 4 channels is 2 GiB).
MAX_ROI = 512


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
        if data["format_version"] != FORMAT_VERSION or isinstance(data["format_version"], bool):
            raise ModelError(f"{source}: format_version {data['format_version']!r} is not supported "
                             f"(this program reads {FORMAT_VERSION})")
        if not isinstance(data["architecture"], str) or data["architecture"] not in GENERATORS:
            raise ModelError(f"{source}: unknown architecture {data['architecture']!r}; "
                             f"known: {sorted(GENERATORS)}")
        for key in _MAPPING_KEYS:
            if key in data and not isinstance(data[key], Mapping):
                raise ModelError(f"{source}: {key!r} must be an object, got {data[key]!r}")
        for key in _TEXT_KEYS:
            if key in data and not isinstance(data[key], str):
                raise ModelError(f"{source}: {key!r} must be text, got {data[key]!r}")
        if not isinstance(data["regions"], list) or tuple(data["regions"]) != REGIONS:
            raise ModelError(f"{source}: regions {data['regions']!r} are not {list(REGIONS)}")
        try:
            check_config(data["architecture"], data["config"])
        except ModelError as error:
            raise ModelError(f"{source}: {error}") from None
        _check_inference(data.get("inference") or {}, source)
        value = data["resolution_mm"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelError(f"{source}: resolution_mm {value!r} is not a number")
        resolution = float(value)
        if not (math.isfinite(resolution) and MIN_RESOLUTION_MM <= resolution <= MAX_RESOLUTION_MM):
            raise ModelError(f"{source}: resolution_mm must be {MIN_RESOLUTION_MM}..{MAX_RESOLUTION_MM} mm, "
                             f"got {value!r}")
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


def _check_inference(settings: Mapping[str, Any], source: str) -> None:
    """The sliding window a card asks for: 1..MAX_ROI voxels a side, overlap in [0, 1)."""
    roi = settings.get("roi")
    sides = roi if isinstance(roi, list) else [roi] if roi is not None else []
    if (isinstance(roi, list) and len(roi) != 3) or any(
            isinstance(n, bool) or not isinstance(n, (int, float)) or not 1 <= n <= MAX_ROI for n in sides):
        raise ModelError(f"{source}: inference roi {roi!r} must be 1..{MAX_ROI} voxels (one number or three)")
    overlap = settings.get("overlap", 0.0)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ModelError(f"{source}: inference overlap {overlap!r} must be a number in [0, 1)")


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
    """The card of a model directory, checked (no weights loaded)."""
    model_dir = _checked_dir(Path(model_dir))
    card_path = model_dir / CARD_FILE
    if not card_path.exists():
        raise ModelError(f"{model_dir} has no {CARD_FILE} (a model directory holds {CARD_FILE} and {WEIGHTS_FILE})")
    try:
        text = read_small_text(card_path, "model card", MAX_CARD_BYTES)
    except StudyLoadError as error:
        raise ModelError(str(error)) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ModelError(f"{card_path} is not valid JSON: {error}") from None
    return ModelCard.from_dict(data, source=str(card_path))


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
    weights_path = model_dir / WEIGHTS_FILE
    if not weights_path.exists():
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f"; found {pickles}, which would need unpickling: refused" if pickles else ""
        raise ModelError(f"{model_dir} has no {WEIGHTS_FILE}{hint}")
    data = _read_weights(weights_path)
    if data[8:9] != b"{" and (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise ModelError(f"{weights_path} is a pickle/zip torch file, not safetensors: refused (never unpickled)")
    version = content_hash(data)
    if version != card.version:
        raise ModelError(f"{weights_path} has content hash {version}, but the card says version "
                         f"{card.version!r}: the weights and card do not belong together")
    _check_state(expected, _header_shapes(data, weights_path), weights_path)
    return card, data


def _read_weights(path: Path) -> bytes:
    """The weights file's bytes: a regular file of at most MAX_WEIGHTS_BYTES."""
    try:
        return read_small_bytes(path, "weights file", MAX_WEIGHTS_BYTES)
    except (StudyLoadError, OSError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None


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


def _checked_dir(model_dir: Path) -> Path:
    if model_dir.is_file():
        if model_dir.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelError(f"{model_dir} is a pickled torch file; BrainSeg loads only a model directory "
                             f"with {CARD_FILE} and {WEIGHTS_FILE} (pickles are never unpickled)")
        raise ModelError(f"{model_dir} is a file; a model is a directory with {CARD_FILE} and {WEIGHTS_FILE}")
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    return model_dir


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
