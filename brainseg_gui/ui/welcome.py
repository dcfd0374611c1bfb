"""What the central area shows before a study is open: open buttons, the demo, recent studies."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class WelcomePanel(QWidget):
    open_file_requested = Signal()
    open_folder_requested = Signal()
    demo_requested = Signal()
    recent_requested = Signal(object)  # Path

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        title = QLabel("<h2>BrainSeg</h2><p>Open a study: a case folder, any file of a case, a 4D NIfTI "
                       "or a DICOM folder. You can also drop it on this window.</p>"
                       "<p><i>Research software, not for diagnosis.</i></p>")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title.setWordWrap(True)
        layout.addWidget(title)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for text, signal in (("Open file…", self.open_file_requested),
                             ("Open folder…", self.open_folder_requested),
                             ("Open the demo (synthetic)", self.demo_requested)):
            button = QPushButton(text)
            button.clicked.connect(signal)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.recent_title = QLabel("Recent studies")
        self.recent_title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.recent_title)
        self.recent = QListWidget()
        self.recent.setMaximumWidth(700)
        self.recent.itemActivated.connect(lambda item: self.recent_requested.emit(Path(item.text())))
        layout.addWidget(self.recent, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)

    def set_recent(self, paths: list[Path]) -> None:
        self.recent.clear()
        for path in paths:
            self.recent.addItem(QListWidgetItem(str(path)))
        self.recent.setVisible(bool(paths))
        self.recent_title.setVisible(bool(paths))
