"""The first-start welcome: shown once, skippable, names the device and the research-use note, opens the demo."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QPainter

from brainseg_gui import RESEARCH_USE_NOTE
from brainseg_gui.ui import first_run
from brainseg_gui.ui.first_run import DeviceSummary, WelcomeDialog
from tests.ui.conftest import shown_window

CPU = DeviceSummary("CPU, 2 threads", False, "Segmentation runs on the CPU because of a test.")


@pytest.fixture
def window(qtbot, settings, monkeypatch):
    win = shown_window(qtbot, settings, monkeypatch, size=(1300, 780))
    yield win
    win.close()


def test_shown_at_first_start_only(qtbot, window) -> None:
    assert first_run.should_show(window.settings, environ={})
    dialog = first_run.show_at_first_start(window, demo_open=False, environ={}, device=CPU)
    assert dialog is not None
    qtbot.waitExposed(dialog)
    assert dialog.isVisible() and dialog.isModal()  # window-modal via open(): the event loop keeps running
    assert not first_run.should_show(window.settings, environ={})
    dialog.accept()
    assert first_run.show_at_first_start(window, demo_open=False, environ={}, device=CPU) is None


def test_environment_switch_skips_it(window) -> None:
    assert not first_run.should_show(window.settings, environ={first_run.SKIP_ENV: "1"})
    assert first_run.should_show(window.settings, environ={first_run.SKIP_ENV: "0"})
    assert first_run.show_at_first_start(window, demo_open=True, environ={first_run.SKIP_ENV: "1"}) is None


def test_every_start_checkbox_brings_it_back(qtbot, window) -> None:
    dialog = first_run.show_welcome(window, device=CPU)
    assert not dialog.every_start.isChecked()
    dialog.every_start.setChecked(True)
    dialog.accept()
    assert first_run.should_show(window.settings, environ={})
    again = first_run.show_welcome(window, device=CPU)
    assert again.every_start.isChecked()  # the choice is shown as it was left
    again.every_start.setChecked(False)
    again.accept()
    assert not first_run.should_show(window.settings, environ={})


def test_demo_button_opens_the_demo_and_closes(qtbot, window, monkeypatch) -> None:
    opened = []
    monkeypatch.setattr(window, "open_demo", lambda: opened.append(True))
    dialog = first_run.show_welcome(window, device=CPU)
    qtbot.waitExposed(dialog)
    qtbot.mouseClick(dialog.demo_button, Qt.MouseButton.LeftButton)
    assert opened == [True]
    assert not dialog.isVisible()


def test_help_menu_shows_it_again(qtbot, window) -> None:
    action = first_run.add_help_action(window)
    assert action is not None and "Welcome" in action.text()
    assert action in window.menuBar().actions()[-1].menu().actions()


def test_text_names_device_speed_and_research_note(qtbot) -> None:
    gpu = DeviceSummary("NVIDIA H100 80GB HBM3 (CUDA)", True, "Segmentation runs on this GPU.")
    dialog = WelcomeDialog(gpu, demo_open=True)
    qtbot.addWidget(dialog)
    assert "NVIDIA H100 80GB HBM3 (CUDA)" in dialog.device_label.text()
    assert "runs on this GPU" in dialog.device_label.text()
    assert RESEARCH_USE_NOTE in dialog.research_note.text()


def test_device_summary_here_is_the_cpu_with_its_reason() -> None:
    import torch

    summary = first_run.device_summary()
    if torch.cuda.is_available():
        assert summary.gpu and "CUDA" in summary.name
        return
    assert not summary.gpu
    assert summary.name.startswith("CPU, ") and "thread" in summary.name
    assert "runs on the CPU" in summary.speed
    if torch.version.cuda is None:
        assert "CPU-only build" in summary.speed


def test_first_start_screenshot(qtbot, window, toy_case, screenshots) -> None:
    """The welcome over the window at a first start, as a user sees it (saved for review)."""
    with qtbot.waitSignal(window.study_opened, timeout=60_000):
        window.open_study(toy_case)
    dialog = first_run.show_at_first_start(window, demo_open=False, environ={}, device=first_run.device_summary())
    assert dialog is not None
    qtbot.waitExposed(dialog)
    dialog.adjustSize()
    qtbot.wait(50)
    picture = window.grab()  # a top-level dialog is not in the window's grab: paint it in, window dimmed
    painter = QPainter(picture)
    painter.setOpacity(0.45)
    painter.fillRect(picture.rect(), Qt.GlobalColor.black)
    painter.setOpacity(1.0)
    card = dialog.grab()
    painter.drawPixmap(QPoint((picture.width() - card.width()) // 2, (picture.height() - card.height()) // 3), card)
    painter.end()
    folder = screenshots / "issue7"
    folder.mkdir(exist_ok=True)
    assert card.save(str(folder / "welcome_dialog.png"))
    assert picture.save(str(folder / "first_start.png"))
    assert card.width() >= 600 and card.height() > 250


def test_the_device_is_found_out_in_a_worker_and_filled_in(qtbot, window, monkeypatch) -> None:
    """Finding the device imports torch (seconds at a cold start): the dialog opens at once and fills in."""
    monkeypatch.setattr(first_run, "device_summary", lambda: CPU)
    dialog = first_run.show_welcome(window)
    assert "finding out" in dialog.device_label.text()
    qtbot.waitUntil(lambda: CPU.name in dialog.device_label.text(), timeout=10_000)
    assert CPU.speed in dialog.device_label.text()
    dialog.accept()
