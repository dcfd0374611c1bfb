"""The network on OpenVINO (ml/openvino_network.py): the same labels as torch, converted once, chosen by rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainseg_gui.core.errors import ModelError
from brainseg_gui.core.io import load_study
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml import openvino_network
from brainseg_gui.ml.openvino_network import OpenVinoNetwork, resolve_runtime
from brainseg_gui.ml.predictor import Predictor

pytest.importorskip("openvino", reason="the OpenVINO runtime is optional for the network")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_openvino_gives_torchs_labels_and_converts_once(cache: Path, tiny_model: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    case = write_phantom_case(tmp_path / "cases", seed=4, shape=(40, 48, 36))
    study = load_study(case)
    on_torch = Predictor.from_model_dir(tiny_model, device="cpu", runtime="torch")(study)
    predictor = Predictor.from_model_dir(tiny_model, device="cpu", runtime="openvino")
    on_openvino = predictor(study)
    assert on_openvino.device.endswith("OpenVINO") and predictor.runtime == "openvino"
    assert np.array_equal(on_openvino.regions, on_torch.regions)
    converted = list(cache.glob("openvino/*/generator.xml"))
    assert len(converted) == 1 and converted[0].parent.name.startswith(predictor.model_version)

    def no_second_conversion(*_: object) -> None:
        raise AssertionError("converted again although the conversion is cached")

    monkeypatch.setattr(openvino_network, "_convert", no_second_conversion)
    again = Predictor.from_model_dir(tiny_model, device="cpu", runtime="openvino")(study)
    assert np.array_equal(again.regions, on_torch.regions)


def test_a_failed_conversion_falls_back_to_torch(cache: Path, tiny_model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise ModelError("cannot convert the model for OpenVINO: test")

    monkeypatch.setattr(openvino_network, "_convert", broken)
    case = write_phantom_case(tmp_path / "cases", seed=4, shape=(40, 48, 36))
    predictor = Predictor.from_model_dir(tiny_model, device="cpu", runtime="openvino")
    prediction = predictor(load_study(case))
    assert predictor.runtime == "torch" and not prediction.device.endswith("OpenVINO")


def test_the_runtime_rules() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_runtime("auto", cpu) == "openvino"
    assert resolve_runtime("openvino", cuda) == resolve_runtime("auto", cuda) == "torch"  # a GPU keeps autocast
    assert resolve_runtime("torch", cpu) == "torch"
    with pytest.raises(ModelError, match="unknown runtime"):
        resolve_runtime("tensorrt", cpu)


def test_windows_of_other_sizes_run_on_the_one_converted_model(cache: Path, tiny_model: Path) -> None:
    from brainseg_gui.ml.checkpoint import load_model

    loaded = load_model(tiny_model, "cpu")
    network = loaded.generator.eval()
    twin = OpenVinoNetwork(network, card=loaded.card, divisor=4, cache_dir=cache, threads=1)
    for shape in ((16, 24, 32), (32, 16, 16)):
        window = torch.randn(1, 4, *shape)
        with torch.inference_mode():
            expected = network(window)
        assert torch.allclose(twin(window), expected.float(), atol=1e-3)
