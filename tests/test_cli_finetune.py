"""`brainseg finetune` and `brainseg models` on tiny phantoms with a tiny base model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainseg_gui import cli
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml import model_registry
from brainseg_gui.ml.checkpoint import ModelCard, load_model, save_model
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.shipped import shipped_model_dir

TINY = {"widths": [4, 8]}
FAST = ["--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "16", "--device", "cpu"]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Path], Path]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "user-models"))
    cases = [write_phantom_case(tmp_path / "data", seed=s, shape=(32, 32, 32), case_id=f"P_{s}") for s in (1, 2, 3)]
    torch.manual_seed(0)
    base = tmp_path / "base"
    save_model(base, build_generator("generator3d", TINY),
               ModelCard(architecture="generator3d", config=TINY, resolution_mm=2.0))
    return cases, base


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_finetune_prints_the_table_and_keep_makes_the_model_active(setup, tmp_path: Path, capsys) -> None:
    cases, base = setup
    out = tmp_path / "tuned"
    status, stdout, err = run(capsys, "finetune", cases[0], cases[1], "--val", cases[2], "--out", out,
                              "--base", base, *FAST, "--amp", "off", "--keep", "--note", "site test")
    assert status == 0, err
    assert "Dice before" in stdout and "HD95 before" in stdout
    for region in ("WT", "TC", "ET"):
        assert any(line.startswith(region) for line in stdout.splitlines())
    assert "epoch 1/2" in stdout and "epoch 2/2" in stdout and "before: Dice WT" in stdout
    assert "warning: only 2 training case(s)" in stdout
    version = load_model(out).card.version
    assert f"new model {version} (epoch " in stdout and f"written to {out}" in stdout
    assert f"kept as v1-{version}" in stdout
    registry = model_registry.ModelRegistry()
    assert registry.active().name == f"v1-{version}" and registry.active().note == "site test"
    assert load_model(registry.active().directory).card.training["finetune"]["validation_cases"] == ["P_3"]
    assert load_model(out).card.training["precision"] == "fp32"

    status, stdout, _ = run(capsys, "models")
    assert status == 0 and f"v1-{version}" in stdout and "[active]" in stdout.splitlines()[-1]
    status, stdout, _ = run(capsys, "models", "rollback")
    assert status == 0 and registry.active().shipped and "shipped" in stdout
    status, _, _ = run(capsys, "models", "activate", f"v1-{version}")
    assert status == 0 and registry.active().name == f"v1-{version}"


def test_finetune_refuses_leaks_and_unsafe_outputs_in_one_line(setup, tmp_path: Path, capsys) -> None:
    cases, base = setup
    status, _, err = run(capsys, "finetune", cases[0], cases[1], "--val", cases[1], "--out", tmp_path / "o",
                              "--base", base, *FAST)
    assert status == 2 and err.startswith("brainseg: error: ") and "P_2 is in training and validation" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    status, _, err = run(capsys, "finetune", cases[0], "--val", cases[2], "--out", shipped_model_dir(),
                         "--base", base, *FAST)
    assert status == 2 and "new folder" in err
    status, _, err = run(capsys, "finetune", tmp_path / "missing", "--val", cases[2], "--out", tmp_path / "o")
    assert status == 2 and "missing" in err
    status, _, err = run(capsys, "finetune", cases[0], "--out", tmp_path / "o")
    assert status == 2 and "--val" in err
    status, _, err = run(capsys, "finetune", cases[0], "--val", cases[2], "--out", tmp_path / "o", "--base", base,
                         *FAST, "--amp", "bf16")  # 16^3 patches: D's last convolution sees 2^3 voxels
    assert status == 2 and "wrong gradients" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    status, _, err = run(capsys, "models", "activate")
    assert status == 2 and "needs a model NAME" in err
    status, _, err = run(capsys, "models", "remove", "shipped")
    assert status == 2 and "cannot be removed" in err
