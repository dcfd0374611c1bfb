"""What a fine-tune tells its listener, the per-step clock, and the per-epoch watch: early stopping, collapse.

Events are plain frozen dataclasses, so a child process can send them through a queue
(ml/finetune_job.py). `StepMonitor` is the training loop's step callback: an epoch takes minutes on a
small CPU, so each step is reported (`StepDone`: its losses and the time left from the step rate),
at most STEPS_PER_SECOND a second. `EpochMonitor` is the epoch callback: it turns each epoch into
an `EpochDone`, raises `StopEarly` when the validation Dice has not beaten the best so far (the base
model counted as epoch 0) for `patience` epochs, and emits a collapse `Notice` when the
discriminator wins outright.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from brainseg_gui.ml.finetune_cases import FinetuneError
from brainseg_gui.ml.finetune_metrics import ValidationMetrics

if TYPE_CHECKING:
    from brainseg_gui.ml.finetune import FinetuneSettings

log = logging.getLogger(__name__)

#: The discriminator "wins outright" when its loss stays under this (chance is ln 2 = 0.693) ...
COLLAPSE_D_LOSS = 0.1
#: ... while the generator's adversarial loss is above this (D gives G's output < 10 % "real") ...
COLLAPSE_G_ADV = 2.3
#: ... for this many epochs in a row.
COLLAPSE_EPOCHS = 2
#: Most StepDone events a second (a GPU may run hundreds of steps a second; a CPU step takes seconds).
STEPS_PER_SECOND = 10


@dataclass(frozen=True)
class Started:
    device: str
    base_model: str
    base_version: str
    train_cases: list[str]
    val_cases: list[str]
    epochs: int
    steps_per_epoch: int
    settings: dict[str, Any]
    base_val_dice: dict[str, float]  # the base model at the model's resolution: "epoch 0" of the plot


@dataclass(frozen=True)
class EpochDone:
    epoch: int
    epochs: int
    g_loss: float  # g_adv + lambda_rec * g_rec
    g_rec: float
    g_adv: float
    d_loss: float
    val_dice: dict[str, float]
    best: bool
    seconds: float
    eta_seconds: float


@dataclass(frozen=True)
class StepDone:
    """One training step ended: its losses and the clock (epoch and step count from 1)."""

    epoch: int
    step: int
    steps_per_epoch: int
    epochs: int
    loss_g: float  # this step's g_adv + lambda_rec * g_rec (EpochDone.g_loss is the epoch's mean)
    loss_d: float | None  # None when the adversarial term is off
    seconds: float  # since training began
    eta_seconds: float  # training left at the step rate so far, plus the after-evaluation
    fraction: float = 0.0  # of the whole job (as Progress.fraction): the training's share, this far

    @property
    def position(self) -> float:
        """Where the run is, in epochs: 1.25 is a quarter into epoch 2; the last step of epoch 1 is 1.0."""
        return self.epoch - 1 + self.step / self.steps_per_epoch


@dataclass(frozen=True)
class Evaluated:
    stage: Literal["before", "after"]
    metrics: ValidationMetrics


@dataclass(frozen=True)
class Notice:
    kind: Literal["collapse", "early_stop", "few_cases", "inflated", "info"]
    text: str


FinetuneEvent = Started | StepDone | EpochDone | Evaluated | Notice


class StopEarly(Exception):
    """Raised from the epoch callback to end training (every rank decides alike: same Dice)."""


class StepMonitor:
    """The training loop's step callback: a `StepDone` now and then (always the first and last steps).

    The time left is the training seconds per step so far times the steps left, plus `tail_seconds`
    (the after-evaluation, as long as the before one took). Seconds are counted from the end of the
    first step, so the model loading and case caching before it do not slow the estimate down.
    """

    def __init__(self, settings: FinetuneSettings, steps_per_epoch: int, emit: Callable[[FinetuneEvent], None],
                 tail_seconds: float = 0.0, span: tuple[float, float] = (0.0, 1.0),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.settings, self.steps, self.emit = settings, steps_per_epoch, emit
        self.tail, self.span, self.clock = tail_seconds, span, clock
        self.began = clock()
        self.first: tuple[float, int] | None = None  # (time, steps done) at the end of the first step seen
        self.last_sent = -math.inf

    def __call__(self, epoch: int, step: int, losses: Any) -> None:
        now = self.clock()
        done = (epoch - 1) * self.steps + step
        total = self.settings.epochs * self.steps
        if self.first is None:
            self.first = (now, done)
        elif now - self.last_sent < 1.0 / STEPS_PER_SECOND and done < total:
            return  # too soon: the tensor is not read, so the device is not synced
        self.last_sent = now
        rec, adv, d_loss = (float(v) for v in losses.tolist())
        first_at, first_done = self.first
        per_step = (now - first_at) / (done - first_done) if done > first_done else now - self.began
        start, stop = self.span
        self.emit(StepDone(epoch, step, self.steps, self.settings.epochs, adv + self.settings.lambda_rec * rec,
                           d_loss if self.settings.adversarial else None, now - self.began,
                           per_step * (total - done) + self.tail, start + (stop - start) * done / total))


class EpochMonitor:
    """Turns each training epoch into an EpochDone; decides early stopping; spots collapse."""

    def __init__(self, settings: FinetuneSettings, base_score: float, emit: Callable[[FinetuneEvent], None],
                 warnings: list[str]) -> None:
        self.settings, self.emit, self.warnings = settings, emit, warnings
        self.best_score, self.best_epoch, self.waited, self.collapsed = base_score, 0, 0, 0
        self.history: list[EpochDone] = []
        self.stopped_early = False

    def __call__(self, entry: Any) -> None:
        from brainseg_gui.ml.training import EpochLog

        assert isinstance(entry, EpochLog)
        if not all(math.isfinite(v) for v in (entry.g_rec, entry.g_adv, entry.d_loss)):
            raise FinetuneError(f"training diverged at epoch {entry.epoch} (losses G {entry.g_rec} / {entry.g_adv}, "
                                f"D {entry.d_loss}); try a lower learning rate")
        seconds = [h.seconds for h in self.history] + [entry.seconds]
        remaining = entry.epochs - entry.epoch
        done = EpochDone(entry.epoch, entry.epochs, entry.g_adv + self.settings.lambda_rec * entry.g_rec,
                         entry.g_rec, entry.g_adv, entry.d_loss, dict(entry.val_dice or {}), entry.best,
                         entry.seconds, remaining * sum(seconds) / len(seconds))
        self.history.append(done)
        self.emit(done)
        if self.settings.adversarial and entry.d_loss < COLLAPSE_D_LOSS and entry.g_adv > COLLAPSE_G_ADV:
            self.collapsed += 1
            if self.collapsed == COLLAPSE_EPOCHS:
                self._notice("collapse", f"the discriminator wins outright since epoch {entry.epoch - 1} "
                             f"(D loss {entry.d_loss:.3f}, G adversarial loss {entry.g_adv:.2f}): its signal no "
                             "longer helps the generator; consider a higher lambda or turning the "
                             "adversarial term off")
        else:
            self.collapsed = 0
        score = sum(done.val_dice.values()) / len(done.val_dice) if done.val_dice else float("-inf")
        if score > self.best_score + self.settings.min_improvement:
            self.best_score, self.best_epoch, self.waited = score, entry.epoch, 0
        else:
            self.waited += 1
        if self.settings.patience and self.waited >= self.settings.patience and remaining > 0:
            self.stopped_early = True
            self._notice("early_stop", f"stopped after epoch {entry.epoch}: validation Dice has not improved "
                         f"for {self.waited} epochs (best {self.best_score:.4f}, "
                         f"{'the base model' if self.best_epoch == 0 else f'epoch {self.best_epoch}'})")
            raise StopEarly

    def _notice(self, kind: Literal["collapse", "early_stop"], text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(text)
        self.emit(Notice(kind, text))
