"""Fine-tuning on tiny phantoms with a tiny base model: checks, events, early stop, collapse, cancel."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainseg_gui.core.cases import find_case
from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.ml import finetune as ft
from brainseg_gui.ml import model_registry
from brainseg_gui.ml.checkpoint import ModelCard, load_model, save_model
from brainseg_gui.ml.dataset import read_entry
from brainseg_gui.ml.finetune_cases import cache_cases
from brainseg_gui.ml.finetune_events import STEPS_PER_SECOND, EpochMonitor, StepMonitor
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.training import EpochLog

TINY = {"widths": [4, 8], "deep_supervision": True}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "user-models"))


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("phantoms")
    return [write_phantom_case(root, seed=seed, shape=(40, 40, 32), case_id=f"Phantom_{seed}")
            for seed in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("base") / "model"
    torch.manual_seed(0)
    save_model(folder, build_generator("generator3d", TINY),
               ModelCard(architecture="generator3d", config=TINY, resolution_mm=2.0, modality_dropout=True,
                         postprocess={"threshold": 0.5, "et_min_voxels": 7}, inference={"roi": [32, 32, 32]}))
    return folder


def tiny_settings(**changes) -> ft.FinetuneSettings:
    settings = ft.FinetuneSettings(epochs=2, steps_per_epoch=1, batch_size=2, patch_size=16, device="cpu",
                                   patience=0, seed=1)
    return dataclasses.replace(settings, **changes)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_check_cases_refuses_leaks_and_warns_about_few_cases(cases: list[Path], tmp_path: Path) -> None:
    good = ft.check_cases(cases[:3], [cases[3]])
    assert good.ok and [c.case_id for c in good.train] == ["Phantom_1", "Phantom_2", "Phantom_3"]
    assert any("only 1 validation case" in w for w in good.warnings)
    assert not any("training case" in w for w in good.warnings)

    both = ft.check_cases(cases[:2], [cases[1], cases[3]])
    assert not both.ok and any("Phantom_2 is in training and validation" in e for e in both.errors)
    assert any("only 2 training case(s)" in w for w in both.warnings)

    twice = ft.check_cases([cases[0], cases[0]], [cases[3]])
    assert any("Phantom_1 is given twice" in e for e in twice.errors)
    assert ft.check_cases([], [cases[3]]).errors == ["no labelled training case chosen"]
    assert any("no labelled validation case" in e for e in ft.check_cases(cases[:3], []).errors)
    missing = ft.check_cases([tmp_path / "nowhere"], [cases[3]])
    assert any("training:" in e and "does not exist" in e for e in missing.errors)


def test_the_same_patient_reissued_is_not_allowed_on_both_sides(tmp_path: Path) -> None:
    old = write_phantom_case(tmp_path, seed=1, shape=(24, 24, 24), case_id="Brats17_2013_27_1")
    new = write_phantom_case(tmp_path, seed=2, shape=(24, 24, 24), case_id="Brats18_2013_27_1")
    check = ft.check_cases([old], [new])
    assert any("same patient" in e for e in check.errors)


def test_an_unlabelled_case_is_an_error_and_a_folder_of_cases_expands(cases: list[Path], tmp_path: Path) -> None:
    unlabelled = write_phantom_case(tmp_path / "u", seed=5, shape=(24, 24, 24), case_id="Phantom_5")
    next(unlabelled.glob("*_seg.nii.gz")).unlink()
    check = ft.check_cases([unlabelled], [cases[3]])
    assert any("Phantom_5" in e and "no label map" in e for e in check.errors)
    folder = ft.check_cases([cases[0].parent], [tmp_path / "u"])
    assert [c.case_id for c in folder.train] == ["Phantom_1", "Phantom_2", "Phantom_3", "Phantom_4"]
    assert any("validation: skipped 1 unlabelled case(s)" in w for w in folder.warnings)
    assert any("no labelled validation case" in e for e in folder.errors)


def test_a_corrected_mask_replaces_the_case_labels_in_the_cache(cases: list[Path], tmp_path: Path) -> None:
    case = find_case(cases[0])
    seg = nib.load(str(case.seg))
    empty = tmp_path / "corrected.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8), seg.affine), str(empty))
    original, corrected = cache_cases([case], tmp_path / "a", 2.0)[0], cache_cases(
        [dataclasses.replace(case, seg=empty)], tmp_path / "b", 2.0)[0]
    assert read_entry(original)[2].max() > 0 and read_entry(corrected)[2].max() == 0
    assert read_entry(corrected)[0] == "Phantom_1"


@pytest.mark.slow
def test_a_fine_tune_reports_each_epoch_and_before_after(cases: list[Path], base: Path, tmp_path: Path) -> None:
    base_before = _fingerprint(base)
    events: list[ft.FinetuneEvent] = []
    fractions: list[float] = []
    result = ft.finetune(cases[:3], [cases[3]], tmp_path / "run", base_model=base, settings=tiny_settings(),
                         on_event=events.append, progress=lambda f, m: fractions.append(f))
    kinds = [type(e).__name__ for e in events if not isinstance(e, ft.Notice | ft.StepDone)]
    assert kinds == ["Started", "Evaluated", "EpochDone", "EpochDone", "Evaluated"]
    order = [type(e).__name__ for e in events]
    assert order.index("StepDone") < order.index("EpochDone")  # a step is reported before its epoch ends
    steps = [e for e in events if isinstance(e, ft.StepDone)]
    assert steps[0].position == 1.0 and steps[-1].position == 2.0  # one step an epoch; the last always sent
    assert all(s.loss_g > 0 and s.loss_d is not None and s.loss_d > 0 for s in steps)
    assert steps[-1].eta_seconds >= 0 and steps[0].seconds <= steps[-1].seconds
    started = events[[type(e).__name__ for e in events].index("Started")]
    assert isinstance(started, ft.Started) and started.train_cases == ["Phantom_1", "Phantom_2", "Phantom_3"]
    assert started.base_version == load_model(base).card.version and set(started.base_val_dice) == {"WT", "TC", "ET"}
    assert "CPU" in started.device and started.steps_per_epoch == 1
    epochs = [e for e in events if isinstance(e, ft.EpochDone)]
    for epoch in epochs:
        assert set(epoch.val_dice) == {"WT", "TC", "ET"} and epoch.d_loss > 0
        assert epoch.g_loss == pytest.approx(epoch.g_adv + 20.0 * epoch.g_rec)
    assert epochs[-1].eta_seconds == 0.0 and epochs[0].eta_seconds > 0
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    assert result.before is not None and result.after is not None
    assert set(result.before.per_case) == {"Phantom_4"}
    assert result.before.model_version == load_model(base).card.version
    assert result.after.model_version == result.card.version != result.before.model_version
    assert all(0.0 <= s.dice <= 1.0 and s.hd95 >= 0 for s in result.after.mean.values())
    table = result.table()
    assert "Dice before" in table and table.count("\n") >= 5 and "WT" in table

    card = load_model(result.model_dir).card  # the card was rewritten, the weights still match it
    tuned = card.training["finetune"]
    assert tuned["base_version"] == result.base_version and tuned["validation_cases"] == ["Phantom_4"]
    assert tuned["base_trained_cases"] == [] and tuned["inflated_before"] == [] and result.inflated == {}
    assert tuned["settings"]["lr"] == 1e-4 and tuned["before"]["mean"]["WT"]["dice"] == pytest.approx(
        result.before.mean["WT"].dice, abs=1e-4)
    assert card.postprocess["et_min_voxels"] == 7 and card.inference == {"roi": [32, 32, 32]}
    assert card.config == TINY and card.training["base_model"] == result.base_version
    assert result.saved_epoch in (1, 2) and tuned["saved_epoch"] == result.saved_epoch
    advice = [e.text for e in events if isinstance(e, ft.Notice) and e.kind == "info"]
    assert bool(advice) == (result.after.mean_dice < result.before.mean_dice)  # judged at full resolution
    assert card.training["epochs_done"] == result.saved_epoch  # the staged weights are that epoch's
    assert _fingerprint(base) == base_before


def test_early_stopping_and_the_no_improvement_notice(cases: list[Path], base: Path, tmp_path: Path) -> None:
    events: list[ft.FinetuneEvent] = []
    result = ft.finetune(cases[:3], [cases[3]], tmp_path / "run", base_model=base,
                         settings=tiny_settings(epochs=5, patience=1, min_improvement=2.0, evaluate=False),
                         on_event=events.append)
    assert result.stopped_early and len(result.history) == 1 and result.best_epoch == 0
    notices = {e.kind: e.text for e in events if isinstance(e, ft.Notice)}
    assert "stopped after epoch 1" in notices["early_stop"] and "no epoch beat the base" in notices["info"]
    assert result.before is None and result.after is None and "no before/after" in result.table()


def test_a_validation_case_the_base_was_trained_on_is_reported_and_recorded(cases: list[Path],
                                                                            tmp_path: Path) -> None:
    base = tmp_path / "seen-base"
    torch.manual_seed(0)
    save_model(base, build_generator("generator3d", TINY),
               ModelCard(architecture="generator3d", config=TINY, resolution_mm=2.0,
                         training={"cases": ["Phantom_4", "Elsewhere_1"]}))
    events: list[ft.FinetuneEvent] = []
    result = ft.finetune(cases[:3], [cases[3]], tmp_path / "run", base_model=base,
                         settings=tiny_settings(epochs=1, evaluate=False), on_event=events.append)
    inflated = [e for e in events if isinstance(e, ft.Notice) and e.kind == "inflated"]
    assert len(inflated) == 1 and "Phantom_4" in inflated[0].text and "inflated" in inflated[0].text
    assert result.inflated == {"Phantom_4": "Phantom_4"} and inflated[0].text in result.warnings
    tuned = load_model(result.model_dir).card.training["finetune"]
    assert tuned["inflated_before"] == ["Phantom_4"] and tuned["base_trained_cases"] == ["Elsewhere_1", "Phantom_4"]
    # the new model was trained on its base's cases and on its own: the next fine-tune knows both
    assert ft.trained_cases(result.model_dir) == ["Elsewhere_1", "Phantom_1", "Phantom_2", "Phantom_3", "Phantom_4"]


def _log(epoch: int, d_loss: float, g_adv: float, dice: float) -> EpochLog:
    return EpochLog(epoch, 10, 0.5, g_adv, d_loss, {"WT": dice, "TC": dice, "ET": dice}, 1.0, False)


def test_the_collapse_detector_warns_when_the_discriminator_wins_outright() -> None:
    events: list[ft.FinetuneEvent] = []
    monitor = EpochMonitor(ft.FinetuneSettings(patience=0), 0.5, events.append, [])
    monitor(_log(1, 0.05, 3.0, 0.6))
    monitor(_log(2, 0.69, 0.7, 0.6))  # a healthy epoch resets the count
    monitor(_log(3, 0.05, 3.0, 0.6))
    assert not [e for e in events if isinstance(e, ft.Notice)]
    monitor(_log(4, 0.02, 4.0, 0.6))
    notices = [e for e in events if isinstance(e, ft.Notice)]
    assert len(notices) == 1 and notices[0].kind == "collapse" and "since epoch 3" in notices[0].text
    with pytest.raises(ft.FinetuneError, match="diverged at epoch 5"):
        monitor(_log(5, float("nan"), 3.0, 0.6))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_step_is_reported_with_its_losses_and_the_time_left_from_the_step_rate() -> None:
    events: list[ft.FinetuneEvent] = []
    clock = FakeClock()
    settings = ft.FinetuneSettings(epochs=2, lambda_rec=10.0)
    monitor = StepMonitor(settings, 4, events.append, tail_seconds=30.0, span=(0.2, 0.6), clock=clock)
    clock.now += 12.0  # loading and the first step
    monitor(1, 1, torch.tensor([0.5, 2.0, 0.3]))
    first = events[-1]
    assert isinstance(first, ft.StepDone) and (first.epoch, first.step, first.steps_per_epoch) == (1, 1, 4)
    assert first.position == 0.25 and first.loss_g == pytest.approx(2.0 + 10 * 0.5)
    assert first.loss_d == pytest.approx(0.3) and first.seconds == 12.0
    assert first.eta_seconds == pytest.approx(7 * 12.0 + 30.0)  # no rate yet: the first step's time
    assert first.fraction == pytest.approx(0.2 + 0.4 / 8)  # in the job's share for the training
    for step in (2, 3):
        clock.now += 5.0
        monitor(1, step, torch.tensor([0.4, 2.0, 0.3]))
    assert events[-1].eta_seconds == pytest.approx(5 * 5.0 + 30.0)  # 5 s a step since the first
    assert events[-1].position == 0.75
    clock.now += 0.5 / STEPS_PER_SECOND  # too soon after the last one: skipped, tensor unread
    monitor(1, 4, object())
    assert len(events) == 3
    clock.now += 0.5 / STEPS_PER_SECOND
    monitor(2, 4, torch.tensor([0.4, 2.0, 0.3]))  # the last step is always sent
    assert len(events) == 4 and events[-1].position == 2.0 and events[-1].eta_seconds == pytest.approx(30.0)
    assert events[-1].fraction == pytest.approx(0.6)

    quiet = StepMonitor(dataclasses.replace(settings, adversarial=False), 4, events.append, clock=clock)
    quiet(1, 1, torch.tensor([0.5, 0.0, 0.0]))
    assert events[-1].loss_d is None and events[-1].loss_g == pytest.approx(5.0)


def test_the_advice_rests_on_the_full_resolution_comparison() -> None:
    def metrics(dice: float) -> ft.ValidationMetrics:
        scores = {r: ft.RegionScore(dice, 3.0) for r in ("WT", "TC", "ET")}
        return ft.ValidationMetrics({"c": scores}, scores)

    monitor = EpochMonitor(ft.FinetuneSettings(), 0.9, lambda e: None, [])  # no epoch beat the base
    assert "worse on the validation cases (mean Dice 0.8000 -> 0.7900)" in ft._advice(
        monitor, metrics(0.8), metrics(0.79), 0.002)
    assert ft._advice(monitor, metrics(0.8), metrics(0.81), 0.002) == ""
    assert "no epoch beat" in ft._advice(monitor, None, None, 0.002)
    monitor.best_epoch = 2
    assert ft._advice(monitor, None, None, 0.002) == ""


def test_cancel_and_unsafe_outputs_leave_the_active_model_alone(cases: list[Path], base: Path,
                                                                tmp_path: Path) -> None:
    registry = model_registry.ModelRegistry()
    kept = registry.keep(base, note="active")
    active_before = _fingerprint(kept.directory)
    token = CancelToken()

    def cancel_in_training(fraction: float, message: str) -> None:
        if message.startswith("epoch 1/2"):
            token.cancel()

    with pytest.raises(Cancelled):
        ft.finetune(cases[:3], [cases[3]], tmp_path / "run", settings=tiny_settings(evaluate=False),
                    progress=cancel_in_training, cancel=token)
    assert registry.active().name == kept.name and _fingerprint(kept.directory) == active_before
    for unsafe in (kept.directory, model_registry.shipped_model_dir()):
        with pytest.raises(ft.FinetuneError, match="new folder"):
            ft.finetune(cases[:3], [cases[3]], unsafe, base_model=base, settings=tiny_settings())
    with pytest.raises(ft.FinetuneError, match="is in training and validation"):
        ft.finetune(cases[:3], [cases[2]], tmp_path / "x", base_model=base, settings=tiny_settings())
    with pytest.raises(ft.FinetuneError, match="multiple of 2"):
        ft.finetune(cases[:3], [cases[3]], tmp_path / "y", base_model=base, settings=tiny_settings(patch_size=15))
