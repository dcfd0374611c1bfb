"""A model card (`card.json`): what a generator is, how its inputs are made, how its output is read.

Reading and checking a card needs no torch (a prediction on the cached OpenVINO network never imports
it, ml/openvino_predictor.py). The network's own config (widths, levels) is checked by the torch side,
ml/checkpoint.py, before a network is built from it; `read_card` here checks everything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.read_guard import read_small_bytes, read_small_text

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


@dataclass(frozen=True)
class NormalisationSettings:
    """How an input is made (ml/preprocess.py), the card's typed `normalisation` section.

    clip_percentiles: percentiles inside the brain that clip each sequence before the z-score (robust
    to the single-voxel 32767 outliers of some BraTS 2018 cases). box_margin: voxels of margin around
    the brain's bounding box. Training writes the defaults into every card; inference reads them
    back from the card, so a network is always fed the way it was trained.
    """

    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    box_margin: int = 4

    def __post_init__(self) -> None:
        low, high = self.clip_percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ModelError(f"normalisation clip_percentiles must satisfy 0 <= low < high <= 100, "
                             f"got {list(self.clip_percentiles)}")
        if not 0 <= self.box_margin <= 64:
            raise ModelError(f"normalisation box_margin must be 0..64 voxels, got {self.box_margin}")

    @classmethod
    def from_card(cls, section: Mapping[str, Any] | None, source: str = "card") -> NormalisationSettings:
        """Read a card's `normalisation` (older cards lack box_margin: it was always the default)."""
        section = section or {}
        clip = section.get("clip_percentiles", list(cls.clip_percentiles))
        margin = section.get("box_margin", cls.box_margin)
        if (not isinstance(clip, list) or len(clip) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in clip)):
            raise ModelError(f"{source}: normalisation clip_percentiles {clip!r} must be two numbers")
        if isinstance(margin, bool) or not isinstance(margin, int):
            raise ModelError(f"{source}: normalisation box_margin {margin!r} must be a whole number of voxels")
        return cls((float(clip[0]), float(clip[1])), margin)

    def to_card(self) -> dict[str, Any]:
        """The card's section: the settings, and in words what ml/preprocess.py does with them."""
        return {
            "orientation": "RAS",
            "crop": f"brain bounding box (any sequence non-zero) + {self.box_margin} voxels",
            "box_margin": self.box_margin,
            "clip_percentiles": list(self.clip_percentiles),
            "scaling": "per-sequence z-score inside the brain after clipping; zero outside",
            "channels": ["t1", "t1ce", "t2", "flair"],
            "resample": "trilinear to resolution_mm isotropic",
        }


def default_normalisation() -> dict[str, Any]:
    """What training records in a new card (the defaults of `NormalisationSettings`)."""
    return NormalisationSettings().to_card()


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
        """Validate and build; missing keys or wrong types raise ModelError (the network config: checkpoint)."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: expected a JSON object, got {type(data).__name__}")
        required = ("format_version", "architecture", "config", "resolution_mm", "regions", "version")
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelError(f"{source}: missing keys {missing}")
        if data["format_version"] != FORMAT_VERSION or isinstance(data["format_version"], bool):
            raise ModelError(f"{source}: format_version {data['format_version']!r} is not supported "
                             f"(this program reads {FORMAT_VERSION})")
        if not isinstance(data["architecture"], str):
            raise ModelError(f"{source}: architecture {data['architecture']!r} is not a name")
        for key in _MAPPING_KEYS:
            if key in data and not isinstance(data[key], Mapping):
                raise ModelError(f"{source}: {key!r} must be an object, got {data[key]!r}")
        for key in _TEXT_KEYS:
            if key in data and not isinstance(data[key], str):
                raise ModelError(f"{source}: {key!r} must be text, got {data[key]!r}")
        if not isinstance(data["regions"], list) or tuple(data["regions"]) != REGIONS:
            raise ModelError(f"{source}: regions {data['regions']!r} are not {list(REGIONS)}")
        _check_inference(data.get("inference") or {}, source)
        NormalisationSettings.from_card(data.get("normalisation"), source)
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


def content_hash(data: bytes) -> str:
    """The model version: the first 12 hex digits of sha256(weights file bytes)."""
    return hashlib.sha256(data).hexdigest()[:12]


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


def _checked_dir(model_dir: Path) -> Path:
    if model_dir.is_file():
        if model_dir.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelError(f"{model_dir} is a pickled torch file; BrainSeg loads only a model directory "
                             f"with {CARD_FILE} and {WEIGHTS_FILE} (pickles are never unpickled)")
        raise ModelError(f"{model_dir} is a file; a model is a directory with {CARD_FILE} and {WEIGHTS_FILE}")
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    return model_dir


def checked_weights(model_dir: Path, card: ModelCard) -> bytes:
    """The bytes of the directory's weights file, refused unless they are safetensors of the card's version."""
    weights_path = Path(model_dir) / WEIGHTS_FILE
    if not weights_path.exists():
        pickles = sorted(p.name for p in Path(model_dir).iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f"; found {pickles}, which would need unpickling: refused" if pickles else ""
        raise ModelError(f"{model_dir} has no {WEIGHTS_FILE}{hint}")
    try:
        data = read_small_bytes(weights_path, "weights file", MAX_WEIGHTS_BYTES)
    except (StudyLoadError, OSError) as error:
        raise ModelError(f"cannot read {weights_path}: {error}") from None
    if data[8:9] != b"{" and (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise ModelError(f"{weights_path} is a pickle/zip torch file, not safetensors: refused (never unpickled)")
    version = content_hash(data)
    if version != card.version:
        raise ModelError(f"{weights_path} has content hash {version}, but the card says version "
                         f"{card.version!r}: the weights and card do not belong together")
    return data

