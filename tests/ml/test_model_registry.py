"""The per-user models folder: keep, activate, rollback, remove; the shipped model is never written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml import model_registry
from brainseg_gui.ml.checkpoint import ModelCard, load_model, save_model
from brainseg_gui.ml.model_registry import SHIPPED, ModelRegistry, active_model_dir, models_root
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.shipped import shipped_model_dir


def tiny_model(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    config = {"widths": [2, 4]}
    save_model(folder, build_generator("generator3d", config),
               ModelCard(architecture="generator3d", config=config, resolution_mm=2.0,
                         training={"cases": ["a", "b"], "base_model": "abc"}))
    return folder


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "models"))
    return ModelRegistry()


def test_models_root_follows_the_env_var_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "x"))
    assert models_root() == tmp_path / "x"
    monkeypatch.delenv(model_registry.MODELS_DIR_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert models_root() == tmp_path / "data" / "brainseg" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models_root() == tmp_path / "home" / ".local" / "share" / "brainseg" / "models"


def test_a_fresh_registry_has_only_the_shipped_model_active(registry: ModelRegistry) -> None:
    entries = registry.entries()
    assert [e.name for e in entries] == [SHIPPED]
    assert entries[0].shipped and entries[0].active and entries[0].directory == shipped_model_dir()
    assert active_model_dir() == shipped_model_dir()
    assert not registry.root.exists()  # reading creates nothing


def test_keep_activate_rollback_and_remove(registry: ModelRegistry, tmp_path: Path) -> None:
    shipped_before = _fingerprint(shipped_model_dir())
    first = registry.keep(tiny_model(tmp_path / "m1", 1), note="site A")
    assert first.name.startswith("v1-") and first.name.endswith(first.version)
    assert first.active and not first.shipped and first.note == "site A"
    assert active_model_dir() == first.directory
    assert load_model(first.directory).card.version == first.version
    second = registry.keep(tiny_model(tmp_path / "m2", 2), activate=False)
    assert second.name.startswith("v2-") and not second.active
    assert [e.name for e in registry.entries()] == [SHIPPED, first.name, second.name]
    assert registry.active().name == first.name

    registry.activate(second.name)
    assert registry.active().name == second.name
    json.loads((registry.root / "active.json").read_text())  # valid JSON on disk
    with pytest.raises(ModelError, match="active model"):
        registry.remove(second.name)
    registry.remove(first.name)
    assert [e.name for e in registry.entries()] == [SHIPPED, second.name]

    rolled = registry.rollback_to_shipped()
    assert rolled.shipped and registry.active().shipped and active_model_dir() == shipped_model_dir()
    assert registry.get(second.name).directory.is_dir()  # kept versions survive a rollback
    with pytest.raises(ModelError, match="cannot be removed"):
        registry.remove(SHIPPED)
    with pytest.raises(ModelError, match="no model 'v9-000000000000'"):
        registry.activate("v9-000000000000")
    assert _fingerprint(shipped_model_dir()) == shipped_before
    assert not list((registry.root / "versions").glob(".*"))  # no temporary folders left behind


def test_a_broken_model_is_never_kept_and_a_broken_active_one_falls_back(registry: ModelRegistry,
                                                                          tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m", 3)
    (model / "weights.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        registry.keep(model)
    assert registry._kept() == [] and registry.active().shipped
    good = registry.keep(tiny_model(tmp_path / "g", 4))
    (good.directory / "card.json").write_text("{not json")
    assert registry.active().shipped  # falls back instead of failing every prediction
    assert active_model_dir() == shipped_model_dir()


def test_protected_paths_and_staging(registry: ModelRegistry, tmp_path: Path) -> None:
    kept = registry.keep(tiny_model(tmp_path / "m", 5))
    assert registry.is_protected(shipped_model_dir())
    assert registry.is_protected(kept.directory / "sub")
    assert not registry.is_protected(tmp_path / "elsewhere")
    staged = registry.new_staging_dir()
    assert staged.is_dir() and not any(staged.iterdir()) and not registry.is_protected(staged)
    registry.discard(staged)
    assert not staged.exists()
    with pytest.raises(ModelError, match="not a staged run"):
        registry.discard(kept.directory)
    assert kept.directory.is_dir()


def test_predictions_default_to_the_active_model(registry: ModelRegistry, tmp_path: Path) -> None:
    from brainseg_gui.ml.shipped import default_model_dir

    assert default_model_dir() == shipped_model_dir()
    kept = registry.keep(tiny_model(tmp_path / "tuned", seed=3))
    assert default_model_dir() == kept.directory  # `brainseg predict` without --model uses it
    registry.rollback_to_shipped()
    assert default_model_dir() == shipped_model_dir()
