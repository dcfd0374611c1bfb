"""The cached OpenVINO network without torch (ml/openvino_predictor.py): the same labels as the torch
predictor, taken only when nothing asks for torch, and a `brainseg predict` that never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui.core.io import load_study
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml import openvino_predictor
from brainseg_gui.ml.checkpoint import CARD_FILE, WEIGHTS_FILE
from brainseg_gui.ml.openvino_predictor import OpenVinoPredictor, cached_predictor
from brainseg_gui.ml.predictor import Predictor

pytest.importorskip("openvino", reason="the OpenVINO runtime is optional for the network")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(openvino_predictor, "_GPU_DEVICE_FILES", ())  # as on a machine without a GPU
    return tmp_path / "cache"


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model (some tests change its files)."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def _torch_predictor(model: Path) -> Predictor:
    return Predictor.from_model_dir(model, device="cpu", runtime="openvino")


def _never() -> Predictor:
    raise AssertionError("the torch predictor was built although one window holds the crop")


def test_converted_once_then_the_same_labels_without_torch(cache: Path, model: Path, tmp_path: Path) -> None:
    study = load_study(write_phantom_case(tmp_path / "cases", seed=4, shape=(40, 48, 36)))
    assert cached_predictor(model, larger=_never) is None  # not converted yet: torch converts it
    on_torch = _torch_predictor(model)(study, keep_probabilities=True)
    predictor = cached_predictor(model, larger=_never)
    assert isinstance(predictor, OpenVinoPredictor)
    prediction = predictor(study, keep_probabilities=True)
    assert np.array_equal(prediction.regions, on_torch.regions)
    assert prediction.probabilities is not None and on_torch.probabilities is not None
    assert np.abs(prediction.probabilities.astype(np.float32) - on_torch.probabilities).max() < 2e-3
    assert prediction.device == on_torch.device and prediction.device.endswith("OpenVINO")
    assert prediction.model_version == on_torch.model_version


def test_only_when_nothing_asks_for_torch(cache: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _torch_predictor(model)._network_on(_torch_predictor(model).device)  # convert it
    assert cached_predictor(model, larger=_never) is not None
    for options in ({"tta": True}, {"device": "cuda"}, {"runtime": "torch"}):
        assert cached_predictor(model, larger=_never, **options) is None, options
    monkeypatch.setattr(openvino_predictor, "_GPU_DEVICE_FILES", (str(model),))  # a GPU may be there
    assert cached_predictor(model, larger=_never) is None
    assert cached_predictor(model, larger=_never, device="cpu") is not None


def test_changed_weights_or_network_are_not_run_from_the_cache(cache: Path, model: Path) -> None:
    _torch_predictor(model)._network_on(_torch_predictor(model).device)
    card = json.loads((model / CARD_FILE).read_text())
    other = dict(card, config={**card["config"], "widths": [4, 6]})
    (model / CARD_FILE).write_text(json.dumps(other))
    assert cached_predictor(model, larger=_never) is None  # another network: converted anew by torch
    (model / CARD_FILE).write_text(json.dumps(card))
    assert cached_predictor(model, larger=_never) is not None
    (model / WEIGHTS_FILE).write_bytes((model / WEIGHTS_FILE).read_bytes()[:-1] + b"\0")
    assert cached_predictor(model, larger=_never) is None  # torch refuses them with the reason


def test_a_crop_larger_than_one_window_is_tiled_by_torch(cache: Path, model: Path, tmp_path: Path) -> None:
    card = json.loads((model / CARD_FILE).read_text())
    (model / CARD_FILE).write_text(json.dumps(dict(card, inference={"roi": 16, "overlap": 0.25})))
    study = load_study(write_phantom_case(tmp_path / "cases", seed=4, shape=(40, 48, 36)))
    on_torch = _torch_predictor(model)(study)
    built: list[Predictor] = []

    def larger() -> Predictor:
        built.append(_torch_predictor(model))
        return built[-1]

    predictor = cached_predictor(model, larger=larger)
    assert predictor is not None
    assert np.array_equal(predictor(study).regions, on_torch.regions)
    assert np.array_equal(predictor(study).regions, on_torch.regions)
    assert len(built) == 1  # built once, kept


def test_brainseg_predict_on_the_cached_network_never_imports_torch(cache: Path, model: Path,
                                                                    tmp_path: Path) -> None:
    case = write_phantom_case(tmp_path / "cases", seed=4, shape=(40, 48, 36))
    on_torch = _torch_predictor(model)(load_study(case))  # also converts it into the cache
    output = tmp_path / "out" / "pred.nii.gz"
    output.parent.mkdir()
    script = ("import sys; from brainseg_gui import cli; status = cli.main(sys.argv[1:]); "
              "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(status)")
    env = {**os.environ, "BRAINSEG_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", script, "predict", str(case), "-o", str(output), "--model",
                           str(model), "--device", "cpu"], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "no torch", done.stdout
    assert "OpenVINO" in done.stdout
    written = np.asarray(nib.load(output).dataobj)
    assert np.array_equal(written, on_torch.labels())
