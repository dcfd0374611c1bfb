"""Tiny CPU training runs on phantoms: losses, checkpoints, resume, seeds, cancel, fine-tuning."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from brainseg_gui.core.errors import Cancelled, ModelError
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.ml import train_state
from brainseg_gui.ml.checkpoint import load_model
from brainseg_gui.ml.training import TrainConfig, TrainResult, train


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny convolutions run fastest on one thread, and a busy 2-core CI box does not stall them."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("phantoms")
    for seed in (1, 2, 3):
        write_phantom_case(root, seed=seed, shape=(48, 48, 40))
    return root, tmp_path_factory.mktemp("cache")


def tiny(data: tuple[Path, Path], out: Path, **changes) -> TrainConfig:
    root, cache = data
    config = TrainConfig(
        data_dirs=[root], out_dir=out, cache_dir=cache, epochs=2, steps_per_epoch=2, batch_size=2,
        patch_size=16, resolution_mm=2.0, network={"widths": [4, 8], "deep_supervision": True},
        discriminator={"widths": [4, 8]}, val_fraction=0.34, device="cpu", seed=1,
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        return train(tiny(data, tmp_path_factory.mktemp("run") / "model"))


def _generator_state(out: Path) -> dict[str, torch.Tensor]:
    return train_state.load_state(out)["generator"]


def _stop_in_epoch_two(config: TrainConfig) -> None:
    """Cancel `config`'s run at the first step of its second epoch (after epoch 1's checkpoint)."""
    token = CancelToken()

    def stop(fraction: float, message: str) -> None:
        if message.startswith("epoch 2/2 step 1"):
            token.cancel()

    with pytest.raises(Cancelled):
        train(config, progress=stop, cancel=token)


def test_tiny_run_writes_a_model_and_a_checkpoint(baseline: TrainResult) -> None:
    assert [h.epoch for h in baseline.history] == [1, 2]
    for entry in baseline.history:
        assert all(math.isfinite(v) for v in (entry.g_rec, entry.g_adv, entry.d_loss))
        assert entry.g_adv > 0 and entry.d_loss > 0
        assert set(entry.val_dice) == {"WT", "TC", "ET"}
    loaded = load_model(baseline.model_dir)
    card = loaded.card
    assert card.version == baseline.card.version
    assert card.config == {"widths": [4, 8], "deep_supervision": True}
    assert len(card.training["cases"]) == 2 and len(card.training["validation_cases"]) == 1
    assert not set(card.training["cases"]) & set(card.training["validation_cases"])
    assert set(card.validation["dice"]) == {"WT", "TC", "ET"}
    assert card.training["recipe"]["lambda_rec"] == 20.0 and card.modality_dropout
    assert isinstance(card.postprocess["et_min_voxels"], int)
    assert train_state.load_state(baseline.model_dir)["epoch"] == 2


def test_the_same_seed_gives_identical_weights(data, baseline: TrainResult, tmp_path: Path) -> None:
    again = train(tiny(data, tmp_path / "again"))
    assert again.card.version == baseline.card.version
    reference = _generator_state(baseline.model_dir)
    assert all(torch.equal(t, reference[k]) for k, t in _generator_state(tmp_path / "again").items())
    other = train(tiny(data, tmp_path / "other", seed=2, epochs=1))
    assert not torch.equal(_generator_state(tmp_path / "other")["head.weight"], reference["head.weight"])
    assert other.history[0].epoch == 1


def test_resume_continues_exactly_where_it_stopped(data, baseline: TrainResult, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    _stop_in_epoch_two(tiny(data, out))
    resumed = train(tiny(data, out, resume=True))
    assert [h.epoch for h in resumed.history] == [1, 2]
    assert resumed.history[1].g_rec == baseline.history[1].g_rec
    reference = _generator_state(baseline.model_dir)
    assert all(torch.equal(t, reference[k]) for k, t in _generator_state(out).items())
    assert resumed.card.version == baseline.card.version


def test_cancel_raises_and_leaves_the_last_good_model(data, tmp_path: Path) -> None:
    out = tmp_path / "cancelled"
    token = CancelToken()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("epoch 2/2 step 1"):
            token.cancel()

    with pytest.raises(Cancelled):
        train(tiny(data, out), progress=progress, cancel=token)
    assert load_model(out).card.training["epochs_done"] == 1
    assert train_state.load_state(out)["epoch"] == 1


def test_fine_tune_starts_from_the_base_model(data, baseline: TrainResult, tmp_path: Path) -> None:
    config = tiny(data, tmp_path / "tuned", epochs=1, network={"widths": [2, 4]}, resolution_mm=3.0)
    config.base_model = baseline.model_dir
    tuned = train(config)
    assert tuned.card.config == baseline.card.config  # the base card's network wins
    assert tuned.card.resolution_mm == 2.0
    assert tuned.card.training["base_model"] == baseline.card.version


def test_without_the_adversarial_term_only_the_reconstruction_loss_trains(data, tmp_path: Path) -> None:
    result = train(tiny(data, tmp_path / "plain", epochs=1, adversarial=False, val_fraction=0.0))
    entry = result.history[0]
    assert entry.g_adv == 0.0 and entry.d_loss == 0.0 and entry.g_rec > 0
    assert entry.val_dice is None and result.card.validation == {}


def test_bf16_autocast_trains_on_the_cpu_when_asked(data, tmp_path: Path) -> None:
    result = train(tiny(data, tmp_path / "bf16", epochs=1, amp="bf16", val_fraction=0.0))
    entry = result.history[0]
    assert np.isfinite([entry.g_rec, entry.g_adv, entry.d_loss]).all() and entry.g_rec > 0
    weights = _generator_state(tmp_path / "bf16")
    floats = [t for t in weights.values() if t.is_floating_point()]
    assert floats and all(bool(torch.isfinite(t).all()) and t.dtype == torch.float32 for t in floats)
    assert result.card.training["precision"] == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        train(tiny(data, tmp_path / "fp16", epochs=1, amp="fp16"))


def test_bf16_is_not_used_where_the_cpu_would_compute_wrong_gradients(data, tmp_path: Path) -> None:
    """16^3 patches through D's three strided convolutions: its last 3^3 convolution sees 2^3 voxels."""
    thin = {"patch_size": 16, "discriminator": {"widths": [4, 8, 16]}}
    result = train(tiny(data, tmp_path / "auto", epochs=1, amp="auto", val_fraction=0.0, **thin))
    assert result.card.training["precision"] == "fp32"
    assert np.isfinite([result.history[0].g_rec, result.history[0].g_adv, result.history[0].d_loss]).all()
    with pytest.raises(ValueError, match="wrong gradients"):
        train(tiny(data, tmp_path / "bf16", epochs=1, amp="bf16", val_fraction=0.0, **thin))


def test_a_run_with_an_output_prior_starts_there_and_a_bad_one_is_refused_before_any_write(data, tmp_path) -> None:
    result = train(tiny(data, tmp_path / "prior", epochs=1, steps_per_epoch=1, output_prior=0.01, val_fraction=0.0))
    assert result.card.training["recipe"]["output_prior"] == 0.01
    head_bias = load_model(result.model_dir).generator.head.bias  # one Adam step of 1e-4 from logit(0.01)
    assert torch.allclose(head_bias, torch.full_like(head_bias, -4.595), atol=0.01)
    with pytest.raises(ModelError, match="strictly between 0 and 1"):
        train(tiny(data, tmp_path / "bad", epochs=1, output_prior=1.0))
    assert not (tmp_path / "bad").exists()


def test_the_card_records_the_precision_a_run_used(baseline: TrainResult) -> None:
    assert baseline.card.training["precision"] in ("bf16", "fp32")
    assert baseline.card.training["recipe"]["batch_size"] == 2


def test_training_from_a_carried_cache_alone(data, tmp_path: Path) -> None:
    result = train(tiny(data, tmp_path / "cached", data_dirs=[], epochs=1, steps_per_epoch=1))
    assert len(result.card.training["cases"]) + len(result.card.training["validation_cases"]) == 3


def test_the_last_epoch_is_kept_beside_the_best(data, baseline: TrainResult, tmp_path: Path) -> None:
    """OUT/last is G after the latest epoch (what a run without held-out cases delivers); a run that
    finished before it was kept gets it when resumed."""
    last = load_model(baseline.model_dir / "last")
    assert last.card.training["weights"] == "last" and last.card.training["epochs_done"] == len(baseline.history)
    latest = train_state.load_state(baseline.model_dir)["generator"]
    assert all(torch.equal(value, latest[key]) for key, value in last.generator.state_dict().items())
    older = tmp_path / "older"
    shutil.copytree(baseline.model_dir, older, ignore=shutil.ignore_patterns("last"))
    resumed = train(tiny(data, older, resume=True))
    assert resumed.card.version == baseline.card.version
    assert load_model(older / "last").card.version == last.card.version


def test_a_moving_average_leaves_the_run_unchanged_and_resumes_exactly(data, baseline: TrainResult,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "ema"
    _stop_in_epoch_two(tiny(data, out, ema_decay=0.9))
    resumed = train(tiny(data, out, ema_decay=0.9, resume=True))
    straight = train(tiny(data, tmp_path / "straight", ema_decay=0.9))
    # the average only watches: G trains exactly as without it
    assert resumed.card.version == straight.card.version == baseline.card.version
    for result in (resumed, straight):
        assert all(set(h.ema_dice) == {"WT", "TC", "ET"} for h in result.history)
        assert "EMA WT" in result.history[-1].message()
    averaged, straight_averaged = load_model(out / "ema"), load_model(tmp_path / "straight" / "ema")
    assert averaged.card.version == straight_averaged.card.version  # resumed exactly, average included
    assert averaged.card.training["weights"] == "ema" and resumed.card.training["weights"] == "epoch"
    assert averaged.card.validation["dice"] == resumed.history[-1].ema_dice
    model = load_model(out).generator.state_dict()
    different = [k for k, v in averaged.generator.state_dict().items() if v.is_floating_point()
                 and not torch.equal(v, model[k])]
    assert different  # an average of the steps, not the last one


def test_the_moving_average_forgets_its_start_and_refuses_a_bad_decay() -> None:
    from brainseg_gui.ml.training import moving_average

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = moving_average(model, 0.999)
    with torch.no_grad():
        for value in (0.0, 1.0, 1.0, 1.0):
            model[0].weight.fill_(value)
            average.update_parameters(model)
    # the first update copies; the n-th after it keeps (1 + n) / (10 + n) of the average: 2/11, 3/12, 4/13
    expected = 1 - (2 / 11) * (3 / 12) * (4 / 13)
    assert torch.allclose(average.module[0].weight, torch.full((2, 2), expected))
    for decay in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            moving_average(model, decay)
