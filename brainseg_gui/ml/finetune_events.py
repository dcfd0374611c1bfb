"""What a fine-tune tells its listener, and the per-epoch watch: early stopping and collapse.

Events are plain frozen dataclasses, so a child process can send them through a queue
(ml/finetune_job.py). `EpochMonitor` is the training loop's epoch callback: it turns each epoch into
an `EpochDone`, raises `StopEarly` when the validation Dice has not beaten the best so far (the base
model counted as epoch 0) for `patience` epochs, and emits a collapse `Notice` when the
discriminator wins outright.
"""

from __future__ import annotations

import logging
import math
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
class Evaluated:
    stage: Literal["before", "after"]
    metrics: ValidationMetrics


@dataclass(frozen=True)
class Notice:
    kind: Literal["collapse", "early_stop", "few_cases", "info"]
    text: str


FinetuneEvent = Started | EpochDone | Evaluated | Notice


class StopEarly(Exception):
    """Raised from the epoch callback to end training (every rank decides alike: same Dice)."""


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
