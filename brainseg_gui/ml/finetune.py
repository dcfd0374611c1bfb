"""Fine-tuning a model on a site's own annotated cases (issue 6): the GUI panel and `brainseg finetune`.

The run is the ordinary adversarial training (ml/training.py) started from the base model's weights
(`TrainConfig.base_model`; network, resolution and post-processing come from its card), on the
chosen training cases, validated on held-apart cases after every epoch. Around it:
  - case checks (ml/finetune_cases.py): nothing on both sides, not even the same patient; a
    validation case the base model was trained on is flagged (its Dice before is inflated);
  - per-step events (losses, time left) and per-epoch events for the listener, and a watch
    (ml/finetune_events.py) that stops early when the validation Dice (model resolution, cheap) has
    not beaten the best so far, the base model included, by `min_improvement` for `patience` epochs,
    and gives a collapse notice when the discriminator wins outright (its loss near 0 while the
    generator's adversarial loss is large): the adversarial signal is then noise;
  - Dice and HD95 per region before and after, with the real predictor at full resolution
    (ml/finetune_metrics.py).
The new model is written only into `out_dir`, a staging folder claimed for `finetune`
(core/output_folder.py: an empty or new folder, or an earlier fine-tune's; `force` writes beside
other files without touching them): the active and shipped models are never touched here (ml/model_registry.py keeps a staged model on request), so a cancel, an error or
a killed process leaves them as they were. Under torchrun the training runs on every process; rank 0
alone prepares the cases, evaluates and writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainseg_gui.core.output_folder import OutputFolder, claim
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.ml.finetune_cases import (
    MIN_TRAIN_CASES,
    MIN_VAL_CASES,
    CaseCheck,
    CaseInput,
    FinetuneError,
    check_cases,
    inflated_warning,
    trained_cases,
)
from brainseg_gui.ml.finetune_events import (
    EpochDone,
    EpochMonitor,
    Evaluated,
    FinetuneEvent,
    Notice,
    Started,
    StepDone,
    StepMonitor,
    StopEarly,
)
from brainseg_gui.ml.finetune_metrics import (
    RegionScore,
    ValidationMetrics,
    comparison_rows,
    format_comparison,
)

__all__ = [
    "MIN_TRAIN_CASES", "MIN_VAL_CASES", "SETTING_HELP", "CaseCheck", "CaseInput", "EpochDone", "Evaluated",
    "FinetuneError", "FinetuneEvent", "FinetuneResult", "FinetuneSettings", "Notice", "RegionScore", "Started",
    "StepDone", "ValidationMetrics", "check_cases", "comparison_rows", "finetune", "trained_cases",
]

log = logging.getLogger(__name__)

#: The share of the job's progress (0-1) the training takes: caching and the before-evaluation come
#: first, the after-evaluation last.
TRAINING_SPAN = (0.12, 0.9)


@dataclass
class FinetuneSettings:
    """A fine-tune's knobs (the panel's settings; tooltips in SETTING_HELP)."""

    epochs: int = 20
    lr: float = 1e-4
    lambda_rec: float = 20.0
    batch_size: int = 16
    augment: bool = True
    adversarial: bool = True
    device: str = "auto"
    amp: str = "auto"
    patience: int = 4
    min_improvement: float = 0.002
    patches_per_case: int = 16
    steps_per_epoch: int | None = None
    patch_size: int = 64
    seed: int = 0
    evaluate: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def steps_for(self, train_cases: int) -> int:
        """Steps in one epoch: every training case seen `patches_per_case` times as a patch."""
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        return max(1, math.ceil(train_cases * self.patches_per_case / self.batch_size))

    def check(self) -> None:
        problems = [f"{name} must be at least 1, got {getattr(self, name)}"
                    for name in ("epochs", "batch_size", "patches_per_case", "patch_size")
                    if int(getattr(self, name)) < 1]
        if not self.lr > 0 or not self.lambda_rec > 0:
            problems.append(f"lr and lambda_rec must be positive, got {self.lr} and {self.lambda_rec}")
        if self.amp not in ("auto", "bf16", "off"):
            problems.append(f"amp must be auto, bf16 or off, got {self.amp!r}")
        if self.patience < 0 or self.min_improvement < 0:
            problems.append("patience and min_improvement cannot be negative")
        if problems:
            raise FinetuneError("fine-tune settings: " + "; ".join(problems))


SETTING_HELP: dict[str, str] = {
    "epochs": "Most passes over the training cases; early stopping usually ends the run sooner.",
    "lr": "Learning rate (Adam), decayed to zero over the run. 1e-4 moves a trained model gently.",
    "lambda_rec": "Weight of the voxel-wise loss (BCE + Dice) against the adversarial loss. "
                  "Higher: closer to plain supervised training.",
    "batch_size": "Patches per training step (under torchrun: shared out over the processes).",
    "augment": "Random rotations, flips, scaling, intensity changes and noise on each patch.",
    "adversarial": "Train against the discriminator (the GAN method). Off: supervised loss only.",
    "device": "Where training runs: auto (a GPU when there is one), cpu or cuda.",
    "amp": "Arithmetic precision: auto is bf16 on a GPU and on CPUs that compute bf16 natively (about half "
           "the time a step), fp32 elsewhere; off: always fp32.",
    "patience": "Stop after this many epochs without a better validation Dice (0: never stop early).",
    "min_improvement": "Mean validation Dice gain that counts as better.",
    "patches_per_case": "Patches drawn from each training case per epoch.",
    "steps_per_epoch": "Training steps per epoch (empty: from the patches per case).",
    "patch_size": "Edge of the cubic training patches, in voxels at the model's resolution.",
    "seed": "Random seed: the same seed and cases repeat a run.",
    "evaluate": "Measure Dice and HD95 per region on the validation cases before and after.",
}


@dataclass(frozen=True)
class FinetuneResult:
    model_dir: Path
    card: Any  # ModelCard (typed loosely so this module imports without torch)
    base_model: Path
    base_version: str
    history: list[EpochDone]
    best_epoch: int  # the best validation Dice, the base model counted as epoch 0
    stopped_early: bool
    before: ValidationMetrics | None
    after: ValidationMetrics | None
    warnings: list[str] = field(default_factory=list)
    device: str = ""
    seconds: float = 0.0
    #: validation case id -> the base model's training case it repeats: its "before" Dice is inflated
    inflated: dict[str, str] = field(default_factory=dict)

    @property
    def saved_epoch(self) -> int:
        """The epoch whose weights are in `model_dir` (the best fine-tuned epoch; 0 if none ran)."""
        return max((e.epoch for e in self.history if e.best), default=0)

    def table(self) -> str:
        return format_comparison(self.before, self.after)

    def improved(self) -> bool:
        return self.before is not None and self.after is not None and self.after.mean_dice >= self.before.mean_dice


def _ignore(event: FinetuneEvent) -> None:
    """No event listener."""


def _check_out_dir(out_dir: Path, base_dir: Path) -> None:
    from brainseg_gui.ml.model_registry import ModelRegistry

    resolved = out_dir.resolve()
    if resolved == base_dir.resolve() or ModelRegistry().is_protected(out_dir):
        raise FinetuneError(f"{out_dir} is the base, the shipped or a kept model: a fine-tune writes its new "
                            "model into a new folder (keep it afterwards to make it active)")


def finetune(train_cases: Sequence[CaseInput], val_cases: Sequence[CaseInput], out_dir: Path, *,
             base_model: Path | None = None, settings: FinetuneSettings | None = None,
             progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
             on_event: Callable[[FinetuneEvent], None] | None = None, force: bool = False) -> FinetuneResult:
    """Fine-tune `base_model` (default: the active model) into `out_dir`; see the module docstring."""
    from brainseg_gui.ml import distributed
    from brainseg_gui.ml.checkpoint import load_model
    from brainseg_gui.ml.model_registry import active_model_dir

    settings = settings or FinetuneSettings()
    settings.check()
    emit = on_event or _ignore
    started = time.perf_counter()
    base_dir = Path(base_model) if base_model is not None else active_model_dir()
    base_trained = trained_cases(base_dir)
    check = check_cases(train_cases, val_cases, base_trained)
    if check.errors:
        raise FinetuneError("; ".join(check.errors))
    base = load_model(base_dir)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, base_dir)
    multiple = 2 ** (len(base.card.config.get("widths", [0, 0, 0, 0])) - 1)
    if settings.patch_size % multiple:
        raise FinetuneError(f"patch_size {settings.patch_size} must be a multiple of {multiple} for this model")
    output = claim(out_dir, "finetune", force=force) if distributed.env_context().is_main else None
    context, device = distributed.setup(settings.device)
    warnings = list(check.warnings)
    for text in check.warnings:
        emit(Notice("few_cases", text))
    if check.inflated:
        warnings.append(inflated_warning(check.inflated))
        emit(Notice("inflated", warnings[-1]))

    train_ids = [case.case_id for case in check.train]
    val_ids = [case.case_id for case in check.val]
    cache_dir = out_dir / "training" / "cache"
    steps = settings.steps_for(len(train_ids))
    config = _train_config(settings, out_dir, cache_dir, base_dir, val_ids, steps)
    from brainseg_gui.ml.precision import precision_name
    from brainseg_gui.ml.training import run_precision

    # a precision the device or the base model's networks cannot honour is refused before any write
    precision = run_precision(config, base.card.architecture, dict(base.card.config), device)
    if output is not None:
        from brainseg_gui.ml.training import own_outputs

        own_outputs(output, config)
    distributed.barrier()  # rank 0's claim is recorded before another node's first process reads it
    if output is None and context.is_local_main:
        output = claim(out_dir, "finetune", force=force)
    base_dice = _prepare(check, cache_dir, base, device, context, sub_progress(progress, 0.0, 0.05), cancel,
                         output)
    from brainseg_gui.ml.device import describe_device

    device_text = f"{describe_device(device)}, {context.describe()}, {precision_name(precision)}"
    emit(Started(device_text, str(base_dir), base.card.version, train_ids, val_ids, settings.epochs, steps,
                 settings.to_dict(), base_dice))
    base_version = base.card.version
    del base  # the training loads its own copy

    before = after = None
    before_seconds = 0.0
    if settings.evaluate and context.is_main:
        clock = time.perf_counter()
        before = _evaluate(base_dir, check, device, sub_progress(progress, 0.05, TRAINING_SPAN[0]), cancel,
                           "before")
        before_seconds = time.perf_counter() - clock
        emit(Evaluated("before", before))

    monitor = EpochMonitor(settings, sum(base_dice.values()) / len(base_dice), emit, warnings)
    steps_monitor = StepMonitor(settings, steps, emit, tail_seconds=before_seconds, span=TRAINING_SPAN)
    _train(config, monitor, steps_monitor, _with_eta(progress, *TRAINING_SPAN, before_seconds), cancel)

    from brainseg_gui.ml.checkpoint import read_card

    card = None
    if context.is_main:
        if settings.evaluate:
            after = _evaluate(out_dir, check, device, sub_progress(progress, TRAINING_SPAN[1], 1.0), cancel,
                              "after")
            emit(Evaluated("after", after))
        text = _advice(monitor, before, after, settings.min_improvement)
        if text:
            warnings.append(text)
            emit(Notice("info", text))
        card = _finish_card(out_dir, base_dir, settings, check, monitor, before, after, warnings, device_text,
                            base_trained)
    distributed.barrier()
    if card is None:
        card = read_card(out_dir)  # other ranks (a shared file system) read what rank 0 wrote
    progress(1.0, "fine-tune finished")
    return FinetuneResult(out_dir, card, base_dir, base_version,
                          monitor.history, monitor.best_epoch, monitor.stopped_early, before, after, warnings,
                          device_text, time.perf_counter() - started, dict(check.inflated))


def _advice(monitor: EpochMonitor, before: ValidationMetrics | None, after: ValidationMetrics | None,
            min_improvement: float) -> str:
    """A warning when the new model is not better: judged at full resolution when that was measured."""
    if before is not None and after is not None:
        if after.mean_dice < before.mean_dice:
            return (f"the new model is worse on the validation cases (mean Dice {before.mean_dice:.4f} -> "
                    f"{after.mean_dice:.4f}): keeping it is not advised")
        return ""
    if monitor.best_epoch == 0:
        return (f"no epoch beat the base model's validation Dice by {min_improvement} (at the model's "
                "resolution): keeping the new model is not advised")
    return ""


def _prepare(check: CaseCheck, cache_dir: Path, base: Any, device: Any, context: Any, progress: ProgressFn,
             cancel: CancelToken | None, output: OutputFolder | None) -> dict[str, float]:
    """Cache the cases (rank 0 of each node) and measure the base model's validation Dice.

    The cache folder is emptied first (never a stale entry from an earlier run) through the claimed
    output folder (`output`, given on the first process of each node): only a cache a fine-tune
    wrote is deleted.
    """
    from brainseg_gui.ml import distributed
    from brainseg_gui.ml.dataset import load_cache
    from brainseg_gui.ml.finetune_cases import cache_cases
    from brainseg_gui.ml.validation import evaluate

    if context.is_local_main:
        assert output is not None  # finetune() claims the folder on each node's first process
        output.remove(cache_dir)
        cache_cases([*check.train, *check.val], cache_dir, base.card.resolution_mm, progress=progress, cancel=cancel)
    distributed.barrier()
    dice = None
    if context.is_main:
        val = load_cache([cache_dir / f"{case.case_id}.npz" for case in check.val], device)
        dice = evaluate(base.generator.to(device), val).dice
    return dict(distributed.broadcast_object(dice))


def _train_config(settings: FinetuneSettings, out_dir: Path, cache_dir: Path, base_dir: Path,
                  val_ids: list[str], steps: int) -> Any:
    from brainseg_gui.ml.checkpoint import read_card
    from brainseg_gui.ml.training import TrainConfig

    base_card = read_card(base_dir)
    return TrainConfig(
        data_dirs=[], cache_dir=cache_dir, out_dir=out_dir, val_cases=val_ids, epochs=settings.epochs,
        steps_per_epoch=steps, batch_size=settings.batch_size, lr=settings.lr,
        # poly decay (as in training) rather than constant: the last epochs settle instead of jittering
        # around the base model's optimum; with early stopping the decay rarely reaches its tail.
        lr_schedule="poly", lambda_rec=settings.lambda_rec, adversarial=settings.adversarial,
        augment=settings.augment, modality_dropout=0.2 if base_card.modality_dropout else 0.0,
        patch_size=settings.patch_size, seed=settings.seed, device=settings.device, amp=settings.amp,
        base_model=base_dir,
        # the base model's small-ET threshold is kept: a couple of validation cases cannot re-tune it
        et_min_voxels=int(base_card.postprocess.get("et_min_voxels", 0)),
        description=f"Fine-tuned from model {base_card.version}. " + (base_card.description or ""),
    )


def _train(config: Any, monitor: EpochMonitor, steps: StepMonitor, progress: ProgressFn,
           cancel: CancelToken | None) -> None:
    from brainseg_gui.ml.training import train

    try:
        train(config, progress=progress, cancel=cancel, on_epoch=monitor, on_step=steps)
    except StopEarly:
        pass


def _with_eta(progress: ProgressFn, start: float, stop: float, tail_seconds: float) -> ProgressFn:
    """Map training progress into [start, stop] and add the time left (training + the after-evaluation)."""
    began = time.perf_counter()
    inner = sub_progress(progress, start, stop)

    def report(fraction: float, message: str) -> None:
        if fraction > 0.01:
            left = (time.perf_counter() - began) * (1 - fraction) / fraction + tail_seconds
            message = f"{message} — about {_duration(left)} left"
        inner(fraction, message)

    return report


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _evaluate(model_dir: Path, check: CaseCheck, device: Any, progress: ProgressFn, cancel: CancelToken | None,
              stage: str) -> ValidationMetrics:
    from brainseg_gui.ml.finetune_metrics import evaluate_full

    def report(fraction: float, message: str) -> None:
        progress(fraction, f"{stage}: {message}")

    return evaluate_full(model_dir, check.val, device=str(device), progress=report, cancel=cancel)


def _finish_card(out_dir: Path, base_dir: Path, settings: FinetuneSettings, check: CaseCheck, monitor: EpochMonitor,
                 before: ValidationMetrics | None, after: ValidationMetrics | None, warnings: list[str],
                 device: str, base_trained: list[str]) -> Any:
    """Record the fine-tune in the new model's card (the weights, hence the version, are unchanged)."""
    from brainseg_gui.ml.checkpoint import CARD_FILE, atomic_write_bytes, read_card

    base_card = read_card(base_dir)
    card = read_card(out_dir)
    training = dict(card.training)
    training["finetune"] = {
        "base_model": str(base_dir), "base_version": base_card.version,
        "train_cases": [c.case_id for c in check.train], "validation_cases": [c.case_id for c in check.val],
        # what the base saw, so the next fine-tune knows all this model was trained on (trained_cases)
        "base_trained_cases": base_trained, "inflated_before": sorted(check.inflated),
        "settings": settings.to_dict(), "best_epoch": monitor.best_epoch, "epochs_run": len(monitor.history),
        "saved_epoch": max((e.epoch for e in monitor.history if e.best), default=0),
        "stopped_early": monitor.stopped_early, "device": device, "warnings": warnings,
        "before": before.to_dict() if before else None, "after": after.to_dict() if after else None,
        "where": "full resolution, real predictor, Dice and HD95 (mm) per region",
    }
    inference = dict(card.inference) or dict(base_card.inference)
    card = card.replace(training=training, inference=inference)
    atomic_write_bytes(out_dir / CARD_FILE, (json.dumps(card.to_dict(), indent=2) + "\n").encode())
    return card
