"""Choosing the fine-tune's training and validation cases: two lists, folders and corrected cases.

A folder is searched for labelled cases in a worker (cases without a label map are skipped and
named). The cases corrected in this app (see `corrected_cases`) can be added to either side. The
ml side's `check_cases` (file names only, cheap) says what blocks Start and what deserves a warning,
such as a case or patient on both sides or too few cases; and, given the base model's training cases
(`set_trained`), which validation cases it has seen: their Dice before is inflated, said on a line
under the validation list and on the cases themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app.corrected_cases import CorrectedCase, CorrectedCases
from brainseg_gui.core.cases import CaseFiles
from brainseg_gui.ui.workers import Job, JobRunner

log = logging.getLogger(__name__)

TRAIN, VAL = "train", "val"
SIDE_TITLES = {TRAIN: "Training cases", VAL: "Validation cases (held apart)"}
ERROR_COLOUR, WARNING_COLOUR = "#ff6b6b", "#e0a040"


def labelled_cases(folder: Path, *, progress: Any, cancel: Any) -> tuple[list[CaseFiles], list[str]]:
    """Labelled cases under `folder`, and the ids of the cases skipped for lack of a label map."""
    from brainseg_gui.core.cases import find_cases

    progress(0.1, f"Looking for cases in {folder}")
    found = find_cases(Path(folder))
    cancel.raise_if_cancelled()
    return [c for c in found if c.seg is not None], [c.case_id for c in found if c.seg is None]


class CasesBox(QGroupBox):
    """The two case lists with their buttons and the problems line."""

    changed = Signal()

    def __init__(self, runner: JobRunner, corrected: CorrectedCases, parent: QWidget | None = None) -> None:
        super().__init__("Cases", parent)
        self.runner = runner
        self.corrected = corrected
        self.cases: dict[str, list[CaseFiles]] = {TRAIN: [], VAL: []}
        self.origin: dict[int, str] = {}  # id(CaseFiles) -> "corrected in BrainSeg" or the folder
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.last_skipped: list[str] = []
        self.trained: list[str] = []  # the base model's training cases (set_trained)
        self.inflated: dict[str, str] = {}  # validation case -> the training case of the base it repeats
        self.inflated_text = ""
        self.lists: dict[str, QListWidget] = {}
        column = QVBoxLayout(self)
        for side in (TRAIN, VAL):
            row = QHBoxLayout()
            row.addWidget(QLabel(f"<b>{SIDE_TITLES[side]}</b>"), 1)
            row.addLayout(self._buttons(side))
            column.addLayout(row)
            listing = CaseList()
            listing.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
            listing.setMinimumHeight(70)
            listing.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            listing.setTextElideMode(Qt.TextElideMode.ElideMiddle)
            self.lists[side] = listing
            column.addWidget(listing, 1)
        self.inflated_label = QLabel("")  # under the validation list, where the flagged cases are
        self.inflated_label.setWordWrap(True)
        self.inflated_label.setStyleSheet(f"color: {WARNING_COLOUR}; font-weight: bold")
        self.inflated_label.hide()
        column.addWidget(self.inflated_label)
        self.problems = QLabel("")
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        column.addWidget(self.problems)
        self.refresh()

    def _buttons(self, side: str) -> QHBoxLayout:
        row = QHBoxLayout()
        other = VAL if side == TRAIN else TRAIN
        add = QPushButton("Folder…")
        add.setToolTip("Add every labelled case found in a folder (up to two levels down)")
        add.clicked.connect(lambda: self.ask_folder(side))
        corrected = QPushButton("Corrected…")
        corrected.setToolTip("Add cases whose mask you corrected and exported in BrainSeg")
        corrected.clicked.connect(lambda: self.ask_corrected(side))
        move = QPushButton("↓ Validation" if side == TRAIN else "↑ Training")
        move.setToolTip(f"Move the selected cases to the {SIDE_TITLES[other].split()[0].lower()} list")
        move.clicked.connect(lambda: self.move_selected(side))
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda: self.remove_selected(side))
        for button in (add, corrected, move, remove):
            row.addWidget(button)
        return row

    # ---- changing the lists (tests call these) --------------------------------------------------
    def set_trained(self, case_ids: Sequence[str]) -> None:
        """The cases the base model was trained on (ml `trained_cases`), then re-check the choice."""
        self.trained = list(case_ids)
        self.refresh()

    def add_cases(self, side: str, cases: Sequence[CaseFiles], origin: str = "") -> int:
        """Append cases not already in this list (same case id and label file); returns how many."""
        present = {(c.case_id, c.seg) for c in self.cases[side]}
        added = 0
        for case in cases:
            if (case.case_id, case.seg) in present:
                continue
            self.cases[side].append(case)
            self.origin[id(case)] = origin or (str(case.seg.parent) if case.seg is not None else "")
            present.add((case.case_id, case.seg))
            added += 1
        self.refresh()
        return added

    def add_folder(self, side: str, folder: Path) -> Job:
        """Find the labelled cases in `folder` (in a worker) and add them to `side`."""
        def found(result: tuple[list[CaseFiles], list[str]]) -> None:
            cases, skipped = result
            self.last_skipped = skipped
            self.add_cases(side, cases)
            if skipped:
                self.problems.setText(self.problems.text() + _line(
                    WARNING_COLOUR, f"Skipped (no label map): {', '.join(skipped)}"))

        def failed(error: BaseException) -> None:
            self.problems.setText(_line(ERROR_COLOUR, f"{folder}: {error}"))

        return self.runner.start(f"Finding cases in {folder}", lambda **kw: labelled_cases(folder, **kw),
                                 on_result=found, on_error=failed)

    def add_corrected(self, side: str, records: Sequence[CorrectedCase]) -> int:
        return self.add_cases(side, [r.case_files() for r in records], "corrected in BrainSeg")

    def remove_selected(self, side: str) -> None:
        rows = sorted({self.lists[side].row(item) for item in self.lists[side].selectedItems()}, reverse=True)
        for row in rows:
            del self.cases[side][row]
        self.refresh()

    def move_selected(self, side: str) -> None:
        other = VAL if side == TRAIN else TRAIN
        rows = sorted({self.lists[side].row(item) for item in self.lists[side].selectedItems()})
        moving = [self.cases[side][row] for row in rows]
        self.cases[side] = [c for row, c in enumerate(self.cases[side]) if row not in rows]
        self.cases[other].extend(moving)
        self.refresh()

    def select(self, side: str, case_ids: Sequence[str]) -> None:
        listing = self.lists[side]
        for row, case in enumerate(self.cases[side]):
            listing.item(row).setSelected(case.case_id in case_ids)

    # ---- dialogs ------------------------------------------------------------------------------
    def ask_folder(self, side: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, f"Folder of annotated cases ({SIDE_TITLES[side].lower()})")
        if folder:
            self.add_folder(side, Path(folder))

    def ask_corrected(self, side: str) -> None:
        records = self.corrected.all()
        if not records:
            self.problems.setText(self.problems.text() + _line(
                WARNING_COLOUR, "No corrected cases yet: correct a mask and export it (File > Export "
                                "corrected mask) to add it here."))
            return
        dialog = CorrectedPicker(records, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.add_corrected(side, dialog.chosen())

    # ---- checks -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw both lists and re-check the choice (blocking errors, warnings)."""
        self.errors, self.warnings = self._check()
        for side, listing in self.lists.items():
            listing.clear()
            for case in self.cases[side]:
                item = QListWidgetItem(f"{case.case_id}  —  {self.origin.get(id(case), '')}")
                tip = [f"{k}: {v}" for k, v in case.files.items()] + [f"labels: {case.seg}"]
                seen = self.inflated.get(case.case_id) if side == VAL else None
                if seen is not None:
                    item.setText(f"⚠ {case.case_id}  —  trained on by the base model: Dice before inflated")
                    item.setForeground(QColor(WARNING_COLOUR))
                    tip[:0] = [f"The base model was trained on {seen}: this case's Dice before is inflated",
                               f"from {self.origin.get(id(case), '')}"]
                item.setToolTip("\n".join(tip))
                listing.addItem(item)
        self.inflated_label.setText(f"⚠ {self.inflated_text[0].upper()}{self.inflated_text[1:]}"
                                    if self.inflated_text else "")
        self.inflated_label.setVisible(bool(self.inflated_text))
        lines = [_line(ERROR_COLOUR, e) for e in self.errors] + [_line(WARNING_COLOUR, w) for w in self.warnings]
        self.problems.setText("".join(lines) or f"{len(self.cases[TRAIN])} training and "
                                                f"{len(self.cases[VAL])} validation cases.")
        self.changed.emit()

    def _check(self) -> tuple[list[str], list[str]]:
        """(errors, warnings); sets `inflated` and its line too."""
        from brainseg_gui.ml.finetune_cases import check_cases, inflated_warning

        try:
            check = check_cases(list(self.cases[TRAIN]), list(self.cases[VAL]), self.trained)
        except Exception as error:  # shown in the panel, Start stays off
            log.exception("checking the fine-tune cases failed")
            self.inflated, self.inflated_text = {}, ""
            return [str(error)], []
        self.inflated, self.inflated_text = dict(check.inflated), inflated_warning(check.inflated)
        return list(check.errors), list(check.warnings)


class CaseList(QListWidget):
    """A case list that asks for a few rows only: it grows with spare room, and on a small screen the
    settings below stay within reach (a scroll area gives a column its preferred height)."""

    PREFERRED_ROWS = 4

    def sizeHint(self) -> QSize:
        rows = self.PREFERRED_ROWS * self.fontMetrics().lineSpacing() + 2 * self.frameWidth() + 8
        return QSize(super().sizeHint().width(), max(self.minimumHeight(), rows))


class CorrectedPicker(QDialog):
    """Tick the corrected cases to add."""

    def __init__(self, records: Sequence[CorrectedCase], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Cases corrected in BrainSeg")
        self.records = list(records)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Corrected masks exported from this app, newest first:"))
        self.listing = QListWidget()
        for record in self.records:
            item = QListWidgetItem(f"{record.case_id}  —  {record.mask.name}  ({record.saved_at[:16]})")
            item.setToolTip(str(record.mask))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.listing.addItem(item)
        layout.addWidget(self.listing)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def chosen(self) -> list[CorrectedCase]:
        return [r for row, r in enumerate(self.records)
                if self.listing.item(row).checkState() == Qt.CheckState.Checked]


def _line(colour: str, text: str) -> str:
    from html import escape

    return f"<div style='color:{colour}'>{escape(text)}</div>"
