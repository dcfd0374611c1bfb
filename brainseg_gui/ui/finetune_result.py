"""The end of a fine-tune run: Dice and HD95 per region before and after, a verdict, Keep or Discard.

A validation case the base model was trained on makes its "before" too good: those cells get a star
and a line names the case with its own before Dice (FinetuneResult.inflated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.core.labels import REGIONS

COLUMNS = ("Region", "Dice\nbefore", "Dice\nafter", "Δ Dice", "HD95 mm\nbefore", "HD95 mm\nafter")
#: The "before" columns, starred when a validation case was among the base model's training cases.
BEFORE_COLUMNS = (1, 4)
INFLATED_MARK = "*"
WARNING_STYLE = "color: #e0a040"


class ResultBox(QGroupBox):
    """The before/after table (mean over the validation cases, full resolution) and the two buttons."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Before / after on the validation cases (full resolution)", parent)
        layout = QVBoxLayout(self)
        self.table = QTableWidget(len(REGIONS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 3 * 22 + 12)
        layout.addWidget(self.table)
        self.inflated: dict[str, str] = {}  # validation case -> the base model's training case it repeats
        self.inflated_label = QLabel("")
        self.inflated_label.setWordWrap(True)
        self.inflated_label.setStyleSheet(WARNING_STYLE)
        self.inflated_label.hide()
        layout.addWidget(self.inflated_label)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setMinimumHeight(2 * self.summary.fontMetrics().lineSpacing() + 6)
        layout.addWidget(self.summary)
        buttons = QHBoxLayout()
        self.keep_button = QPushButton("Keep (make it the active model)")
        self.keep_button.setToolTip("Copy the new model into your models folder as a new version and use it")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Delete the new model; the active model stays as it is")
        buttons.addWidget(self.keep_button)
        buttons.addWidget(self.discard_button)
        layout.addLayout(buttons)
        self.show_result(None)

    def show_result(self, result: Any) -> None:
        """Fill the table and the verdict from an ml FinetuneResult (None: empty)."""
        if result is not None:
            self.inflated = dict(getattr(result, "inflated", None) or {})
        self.show_metrics(result.before if result is not None else None,
                          result.after if result is not None else None)
        self.summary.setText("" if result is None else summary(result))
        self.keep_button.setEnabled(result is not None)
        self.discard_button.setEnabled(result is not None)

    def set_inflated(self, inflated: Mapping[str, str]) -> None:
        """The validation cases the base model was trained on (the case check knows them before Start)."""
        self.inflated = dict(inflated)

    def show_metrics(self, before: Any, after: Any) -> None:
        """The table alone (the "before" column fills in as soon as the base model is measured)."""
        seen = sorted(set(self.inflated) & set(before.per_case)) if before is not None else []
        for row, region in enumerate(REGIONS):
            b, a = _score(before, region), _score(after, region)
            delta = "" if b is None or a is None else f"{a[0] - b[0]:+.3f}"
            cells = (region, _fmt(b, 0, "{:.3f}"), _fmt(a, 0, "{:.3f}"), delta,
                     _fmt(b, 1, "{:.1f}"), _fmt(a, 1, "{:.1f}"))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if seen and column in BEFORE_COLUMNS and text:
                    item.setText(text + INFLATED_MARK)
                    item.setToolTip(f"Too good: includes {', '.join(seen)}, which the base model was trained on")
                self.table.setItem(row, column, item)
        self.inflated_label.setText(inflated_note(before, seen))
        self.inflated_label.setVisible(bool(seen))

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item is not None else ""


def summary(result: Any) -> str:
    """One or two lines: best epoch, how the run ended, time and device, and what to do."""
    stop = "stopped early" if result.stopped_early else "ran all epochs"
    if result.before is None or result.after is None:
        verdict = "Not evaluated before/after (see the per-epoch Dice)."
    elif result.improved():
        verdict = "Validation Dice rose or held: keep it to use it."
    else:
        verdict = "Validation Dice fell: discarding is advised."
    best = (f"Best epoch {result.best_epoch} of {len(result.history)}" if result.best_epoch
            else f"No epoch of {len(result.history)} beat the base model")
    return f"{best} ({stop}), {duration(result.seconds)} on {result.device}. {verdict}"


def inflated_note(before: Any, cases: list[str]) -> str:
    """The line under the table: which case makes "before" too good, and its own Dice before."""
    if not cases:
        return ""
    own = "; ".join(f"{case}: " + ", ".join(f"{region} {before.per_case[case][region].dice:.3f}"
                                            for region in REGIONS if region in before.per_case[case])
                    for case in cases)
    one = len(cases) == 1
    return (f"{INFLATED_MARK} Dice before is inflated (and HD95 before too low): the base model was trained on "
            f"validation case{'' if one else 's'} {', '.join(cases)}. "
            f"{'Its' if one else 'Their'} own Dice before — {own}.")


def clock(seconds: float) -> str:
    """Elapsed time that visibly ticks every second: 0:07, 12:34, 1:02:03."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _score(metrics: Any, region: str) -> tuple[float, float] | None:
    if metrics is None:
        return None
    mean: Mapping[str, Any] = metrics.mean
    if region not in mean:
        return None
    return float(mean[region].dice), float(mean[region].hd95)


def _fmt(score: tuple[float, float] | None, index: int, pattern: str) -> str:
    if score is None:
        return ""
    value = score[index]
    return pattern.format(value) if math.isfinite(value) else "–"
