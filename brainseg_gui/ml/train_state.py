"""The resumable training checkpoint, without pickle: nested state -> safetensors + JSON.

    OUT_DIR/training/state.safetensors   every tensor (G, D, both Adam states, RNG states)
    OUT_DIR/training/state.json          the structure around them (scalars, lists, dict keys with
                                         their types) and the tensors file's content hash

Nested dicts/lists/tuples are encoded as JSON with each tensor replaced by {"$t": name}; dict keys
keep their type ({"$d": [[key, value], ...]}) because optimizer states are keyed by int.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.read_guard import MAX_IMAGE_BYTES, read_small_bytes, read_small_text
from brainseg_gui.ml.checkpoint import atomic_write_bytes, content_hash

STATE_FOLDER = "training"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def encode(value: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """JSON-ready structure of `value`; its tensors go into `tensors` under unique names."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {"$t": path}
    if isinstance(value, dict):
        return {"$d": [[key, encode(item, tensors, f"{path}.{key}")] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(item, tensors, f"{path}.{i}") for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [encode(item, tensors, f"{path}.{i}") for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path} in a training checkpoint")


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "$t" in value:
            return tensors[value["$t"]]
        if "$d" in value:
            return {key: decode(item, tensors) for key, item in value["$d"]}
        if "$tuple" in value:
            return tuple(decode(item, tensors) for item in value["$tuple"])
        raise ValueError(f"unknown encoded object with keys {sorted(value)}")
    if isinstance(value, list):
        return [decode(item, tensors) for item in value]
    return value


def save_state(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write the training state atomically (tensors first, then the JSON naming their hash)."""
    folder = Path(out_dir) / STATE_FOLDER
    tensors: dict[str, torch.Tensor] = {}
    structure = encode(state, tensors)
    data = save_safetensors_bytes(tensors)
    atomic_write_bytes(folder / STATE_TENSORS, data)
    document = {"format": 1, "tensors_hash": content_hash(data), "state": structure}
    atomic_write_bytes(folder / STATE_JSON, (json.dumps(document, indent=1) + "\n").encode())
    return folder


def has_state(out_dir: Path) -> bool:
    folder = Path(out_dir) / STATE_FOLDER
    return (folder / STATE_JSON).is_file() and (folder / STATE_TENSORS).is_file()


def load_state(out_dir: Path) -> dict[str, Any]:
    """The state written by `save_state`; a torn or foreign checkpoint raises ModelError."""
    folder = Path(out_dir) / STATE_FOLDER
    try:
        document = json.loads(read_small_text(folder / STATE_JSON, "training checkpoint"))
        data = read_small_bytes(folder / STATE_TENSORS, "training checkpoint", limit=MAX_IMAGE_BYTES)
    except (StudyLoadError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read the training checkpoint in {folder}: {error}") from error
    if document.get("tensors_hash") != content_hash(data):
        raise ModelError(f"{folder / STATE_TENSORS} does not match {folder / STATE_JSON} "
                         "(an interrupted write?); delete the folder to start over")
    return decode(document["state"], load_safetensors_bytes(data))


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return optimizer.state_dict()


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an optimizer state decoded from JSON (lists back to the tuples torch expects)."""
    for group in state["param_groups"]:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict(state)
