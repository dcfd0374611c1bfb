"""Model directories: save/load round trip, the content hash, and every refusal."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    content_hash,
    load_model,
    read_card,
    save_model,
)
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.shipped import default_model_dir, shipped_model_dir

CONFIG = {"widths": [4, 8], "deep_supervision": False}


def _card(config: dict = CONFIG) -> ModelCard:
    return ModelCard(architecture="generator3d", config=config, resolution_mm=2.0,
                     validation={"dice": {"WT": 0.9, "TC": 0.8, "ET": 0.7}},
                     training={"cases": ["a", "b"]})


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    generator = build_generator("generator3d", CONFIG).eval()
    card = save_model(tmp_path / "model", generator, _card())
    return tmp_path / "model", generator, card


def test_round_trip_gives_identical_outputs_and_card(saved) -> None:
    folder, generator, card = saved
    loaded = load_model(folder)
    assert loaded.card == card
    assert loaded.card.version == content_hash((folder / WEIGHTS_FILE).read_bytes())
    assert len(card.version) == 12 and card.created
    assert not loaded.generator.training
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.inference_mode():
        assert torch.equal(loaded.generator(x), generator(x))
    assert ModelCard.from_dict(card.to_dict()) == card
    assert json.loads((folder / CARD_FILE).read_text())["regions"] == ["WT", "TC", "ET"]


def test_float16_weights_load_as_float32_close_to_the_original(tmp_path: Path) -> None:
    generator = build_generator("generator3d", CONFIG).eval()
    save_model(tmp_path, generator, _card(), dtype=torch.float16)
    loaded = load_model(tmp_path)
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(loaded.generator(x), generator(x), atol=1e-2)
    assert next(loaded.generator.parameters()).dtype == torch.float32


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_missing_card(saved) -> None:
    folder, _, _ = saved
    (folder / CARD_FILE).unlink()
    with pytest.raises(ModelError, match="no card.json"):
        load_model(folder)


def test_card_that_is_not_json(saved) -> None:
    folder, _, _ = saved
    (folder / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(folder)


def test_card_missing_keys_are_named(saved) -> None:
    folder, _, card = saved
    data = card.to_dict()
    del data["architecture"], data["resolution_mm"]
    (folder / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"missing keys \['architecture', 'resolution_mm'\]"):
        read_card(folder)


def test_unknown_architecture(saved) -> None:
    folder, _, card = saved
    (folder / CARD_FILE).write_text(json.dumps({**card.to_dict(), "architecture": "transformer9000"}))
    with pytest.raises(ModelError, match="unknown architecture 'transformer9000'"):
        load_model(folder)


def test_missing_weights(saved) -> None:
    folder, _, _ = saved
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match="no weights.safetensors"):
        load_model(folder)


def test_pickle_files_are_refused_never_unpickled(saved, tmp_path: Path) -> None:
    folder, generator, _ = saved
    (folder / WEIGHTS_FILE).unlink()
    torch.save(generator.state_dict(), folder / "model.pt")
    with pytest.raises(ModelError, match=r"model\.pt.*refused"):
        load_model(folder)
    with pytest.raises(ModelError, match="pickled"):
        load_model(folder / "model.pt")
    # A torch.save zip renamed to weights.safetensors is refused too.
    (folder / "model.pt").rename(folder / WEIGHTS_FILE)
    assert zipfile.is_zipfile(folder / WEIGHTS_FILE)
    with pytest.raises(ModelError, match="not safetensors: refused"):
        load_model(folder)


def test_wrong_shapes_are_named(saved) -> None:
    folder, _, card = saved
    (folder / CARD_FILE).write_text(json.dumps({**card.to_dict(), "config": {"widths": [4, 16]}}))
    with pytest.raises(ModelError, match=r"wrong shapes: .*\(expected"):
        load_model(folder)


def test_missing_tensors_are_named(saved) -> None:
    folder, _, card = saved
    state = load_file(folder / WEIGHTS_FILE)
    del state["head.bias"]
    data = save(state)
    (folder / WEIGHTS_FILE).write_bytes(data)
    (folder / CARD_FILE).write_text(json.dumps({**card.to_dict(), "version": content_hash(data)}))
    with pytest.raises(ModelError, match=r"missing tensors \['head.bias'\]"):
        load_model(folder)


def test_weights_that_do_not_match_the_card_hash(saved, tmp_path: Path) -> None:
    folder, _, card = saved
    other = build_generator("generator3d", CONFIG)
    save_model(tmp_path / "other", other, _card())
    (tmp_path / "other" / WEIGHTS_FILE).replace(folder / WEIGHTS_FILE)
    with pytest.raises(ModelError, match=f"card says version '{card.version}'"):
        load_model(folder)


def test_shipped_model_folder_is_the_installed_package() -> None:
    folder = shipped_model_dir()
    assert folder.is_dir()
    assert (folder / "__init__.py").is_file()
    assert default_model_dir() == folder


