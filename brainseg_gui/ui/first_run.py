"""The first-start welcome: the demo study, the device segmentation runs on, and the research-use note.

Shown once per user (remembered in QSettings), window-modal but not blocking: the demo keeps
loading behind it. `brainseg gui --no-welcome` or BRAINSEG_NO_WELCOME=1 skip it (tests, kiosks,
scripted screenshots); Help > Welcome and device shows it again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any, Protocol, cast

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QMenuBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui import RESEARCH_USE_NOTE, __version__, resources_dir


class WelcomeHost(Protocol):
    """The window the welcome opens over: its settings, job runner, demo and Help menu."""

    settings: QSettings
    runner: Any

    def open_demo(self) -> Any: ...
    def menuBar(self) -> QMenuBar: ...

#: QSettings key: true once the welcome was shown (false again when the user asks for it every start).
WELCOME_SHOWN_KEY = "welcome_shown"
#: Environment variable that, set to anything but "" or "0", keeps the welcome from showing.
SKIP_ENV = "BRAINSEG_NO_WELCOME"
#: Measured with the shipped model on a 2-core CPU (BraTS2021_00003, `brainseg predict`): 5.8 s.
CPU_SECONDS_MEASURED = 6
#: The welcome's fixed width (px); its height follows from the wrapped text at this width.
WELCOME_WIDTH = 660
#: The welcome finds out the device (a torch import) this long after it opens, once the study has loaded.
DEVICE_DELAY_MS = 1500


@dataclass(frozen=True)
class DeviceSummary:
    """What segmentation will run on here, said for a user: the device's name and what it means for speed."""

    name: str
    gpu: bool
    speed: str


def device_summary() -> DeviceSummary:
    """The device `--device auto` picks on this machine (imports torch: call it once, at first start)."""
    import torch

    from brainseg_gui.ml.device import describe_device, select_device

    device = select_device("auto")
    name = describe_device(device)
    if device.type == "cuda":
        return DeviceSummary(name, True, "Segmentation runs on this GPU, many times faster than on a CPU.")
    why = ("this BrainSeg's PyTorch is a CPU-only build (a CUDA build is needed to use an NVIDIA GPU)"
           if torch.version.cuda is None else "no usable NVIDIA GPU or driver was found")
    return DeviceSummary(
        name, False,
        f"Segmentation runs on the CPU because {why}. A BraTS case takes several seconds "
        f"(about {CPU_SECONDS_MEASURED} s measured with 2 threads; more cores are faster), "
        "and cancelling is always possible.",
    )


def should_show(settings: QSettings, environ: Mapping[str, str] | None = None) -> bool:
    """True at the first start, unless the welcome is switched off in the environment."""
    env = os.environ if environ is None else environ
    if env.get(SKIP_ENV, "") not in ("", "0"):
        return False
    return not settings.value(WELCOME_SHOWN_KEY, False, type=bool)


class WelcomeDialog(QDialog):
    """The welcome itself; `demo_requested` asks the window to open the demo study."""

    demo_requested = Signal()

    def __init__(self, device: DeviceSummary | None, *, demo_open: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to BrainSeg")
        self.setObjectName("welcomeDialog")
        layout = QVBoxLayout(self)
        layout.setSpacing(12)

        header = QHBoxLayout()
        icon = QLabel()
        app_icon = self.windowIcon()  # the application's, set by make_application
        if app_icon.isNull():
            app_icon = QIcon(str(resources_dir() / "icons" / "brainseg.svg"))
        icon.setPixmap(app_icon.pixmap(64, 64))
        header.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        header.addWidget(_text(f"<h2>Welcome to BrainSeg {escape(__version__)}</h2>"
                               "<p>BrainSeg shows a brain MRI study's four sequences (T1, T1ce, T2, FLAIR), "
                               "segments the tumour with an adversarially trained network and lets you "
                               "correct and export the result. Open a study with File &gt; Open, by dropping "
                               "it on the window, or by double-clicking a .nii, .nii.gz, .nrrd or .mha file "
                               "once <tt>brainseg --install-desktop</tt> has run.</p>"), 1)
        layout.addLayout(header)

        demo_text = ("<b>The demo study</b> is opening behind this window: a synthetic, BraTS-like phantom "
                     "whose tumour regions are known. Press <i>Segment</i> to run the network on it and "
                     "compare with the truth, or open your own study instead."
                     if demo_open else
                     "<b>The demo study</b> is a synthetic, BraTS-like phantom whose tumour regions are "
                     "known: a safe place to try segmenting, editing and exporting.")
        demo_row = QHBoxLayout()
        demo_row.addWidget(_text(demo_text), 1)
        self.demo_button = QPushButton("Open the demo study")
        self.demo_button.setObjectName("welcomeDemoButton")
        self.demo_button.clicked.connect(self.demo_requested)
        self.demo_button.clicked.connect(self.accept)
        demo_row.addWidget(self.demo_button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addLayout(demo_row)

        # None: still being found out (importing torch takes seconds; the dialog must not wait for it)
        self.device_label = _text(_device_html(device) if device else
                                  "<b>This computer:</b> finding out which device segmentation will use…<br>&nbsp;")
        self.device_label.setObjectName("welcomeDevice")
        layout.addWidget(self.device_label)

        self.research_note = _text(f"<b>Research use only.</b> {escape(RESEARCH_USE_NOTE)}")
        self.research_note.setObjectName("welcomeResearchNote")
        self.research_note.setFrameShape(QFrame.Shape.StyledPanel)
        self.research_note.setStyleSheet("QLabel#welcomeResearchNote { background: #fff4d6; color: #5a4300;"
                                         " border: 1px solid #e0b84c; padding: 8px; }")
        layout.addWidget(self.research_note)

        self.every_start = QCheckBox("Show this welcome at every start")
        buttons = QDialogButtonBox()
        start = buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        start.setDefault(True)
        buttons.accepted.connect(self.accept)
        bottom = QHBoxLayout()
        bottom.addWidget(self.every_start, 1)
        bottom.addWidget(buttons)
        layout.addLayout(bottom)
        self.setFixedWidth(WELCOME_WIDTH)
        self._fit_height(layout)

    def set_device(self, device: DeviceSummary) -> None:
        """Show the device once the worker has found it out."""
        self.device_label.setText(_device_html(device))
        self._fit_height(self.layout())

    def _fit_height(self, layout: QLayout) -> None:
        # word-wrapped labels: the height that fits the fixed width, not a guess (which leaves gaps)
        self.setFixedHeight(layout.totalHeightForWidth(WELCOME_WIDTH))


def _device_html(device: DeviceSummary) -> str:
    return f"<b>This computer:</b> {escape(device.name)}<br>{escape(device.speed)}"


def show_welcome(window: WelcomeHost, *, device: DeviceSummary | None = None, demo_open: bool = False) -> WelcomeDialog:
    """Open the welcome over `window` (non-blocking) and remember in its settings that it was shown.

    Without `device`, the device is found out in a worker (it imports torch: seconds at a cold start)
    and filled in when known, so the window and the dialog never freeze for it.
    """
    settings = window.settings
    dialog = WelcomeDialog(device, demo_open=demo_open, parent=cast(QWidget, window))
    if device is None:  # after the window's own start-up work, which a torch import would slow down
        QTimer.singleShot(DEVICE_DELAY_MS, dialog, lambda: window.runner.start(  # dropped with the dialog
            "device", lambda progress, cancel: device_summary(),
            on_result=lambda summary: _fill_device(dialog, summary)))
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.demo_requested.connect(window.open_demo)
    dialog.every_start.setChecked(not settings.value(WELCOME_SHOWN_KEY, True, type=bool))

    def remember(every_start: bool) -> None:
        settings.setValue(WELCOME_SHOWN_KEY, not every_start)
        settings.sync()

    dialog.every_start.toggled.connect(remember)
    remember(dialog.every_start.isChecked())
    dialog.open()
    return dialog


def show_at_first_start(window: WelcomeHost, *, demo_open: bool, environ: Mapping[str, str] | None = None,
                        device: DeviceSummary | None = None) -> WelcomeDialog | None:
    """The app's hook: add Help > Welcome and device, and show the welcome when `should_show` says so."""
    add_help_action(window)
    if not should_show(window.settings, environ):
        return None
    return show_welcome(window, device=device, demo_open=demo_open)


def add_help_action(window: WelcomeHost) -> QAction | None:
    """Help > Welcome and device… (added from here so the shared menus module stays untouched)."""
    for action in window.menuBar().actions():
        menu = action.menu()
        if menu is not None and action.text().replace("&", "") == "Help":
            welcome = QAction("&Welcome and device…", cast(QWidget, window))
            welcome.triggered.connect(lambda: show_welcome(window))
            menu.addAction(welcome)
            return welcome
    return None


def _fill_device(dialog: WelcomeDialog, summary: DeviceSummary) -> None:
    try:
        dialog.set_device(summary)
    except RuntimeError:  # the dialog was closed (and deleted) before the device was known
        pass


def _text(html: str) -> QLabel:
    label = QLabel(html)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    return label
