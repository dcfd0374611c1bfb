"""The fine-tune window on tiny phantoms and a tiny model: case checks, live plots, cancel, keep, rollback.

Training really runs in a spawned process (ml.finetune_job), so each run costs a few seconds of
process start-up; the network (widths 4, 8 at 2 mm) and the patches (16^3) are tiny. Issue 19: the
plots, the progress and the clock move within an epoch; a validation case the active model was
trained on is flagged; the window fits a 1366x768 screen.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PySide6.QtCore import QRect

from brainseg_gui.app.corrected_cases import CorrectedCases
from brainseg_gui.core.cases import find_cases
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml.checkpoint import ModelCard, save_model
from brainseg_gui.ml.finetune_metrics import RegionScore, summarise
from brainseg_gui.ml.model_registry import SHIPPED, ModelRegistry
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ui.finetune_cases import TRAIN, VAL
from brainseg_gui.ui.finetune_panel import MARGIN, FinetunePanel
from brainseg_gui.ui.finetune_plots import FinetunePlots
from brainseg_gui.ui.models_dialog import ModelsDialog

TINY_NET = {"in_channels": 4, "out_channels": 3, "widths": [4, 8], "convs_per_level": 1, "down": "pool",
            "deep_supervision": False}
PHANTOM_SHAPE = (40, 48, 36)
#: Options the panel does not show, set so a run takes seconds: few tiny patches a step.
FAST = {"patch_size": 16, "steps_per_epoch": 2, "patience": 0}
RUN_TIMEOUT_MS = 120_000
SHOTS = "issue6"
#: The smallest screen the window must fit (issue 19): a common laptop.
SMALL_SCREEN = QRect(0, 0, 1366, 768)
STYLE = Path(__file__).resolve().parents[2] / "resources" / "style.qss"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the spawned training process


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    for seed in (11, 12, 13):
        write_phantom_case(root, seed=seed, shape=PHANTOM_SHAPE, case_id=f"phantom{seed}")
    return root


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """A private models folder whose active model is a tiny kept one (the fine-tune's base)."""
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(tmp_path / "models"))
    torch.manual_seed(0)
    save_model(tmp_path / "tiny", build_generator("generator3d", TINY_NET),
               ModelCard(architecture="generator3d", config=TINY_NET, resolution_mm=2.0))
    registry = ModelRegistry(tmp_path / "models")
    registry.keep(tmp_path / "tiny", note="tiny test base")
    return registry


def make_panel(qtbot, registry: ModelRegistry, tmp_path: Path, phantoms: Path, **settings) -> FinetunePanel:
    panel = FinetunePanel(registry, CorrectedCases(tmp_path / "corrected.json"))
    qtbot.addWidget(panel)
    if STYLE.is_file():  # the app's dark theme, so the screenshots look like the app
        panel.setStyleSheet(STYLE.read_text(encoding="utf-8"))
    panel.set_settings(device="cpu", batch_size=2, **{**FAST, **settings})
    panel.cases.add_folder(TRAIN, phantoms)
    qtbot.waitUntil(lambda: len(panel.cases.cases[TRAIN]) == 3, timeout=10_000)
    panel.cases.select(TRAIN, ["phantom13"])
    panel.cases.move_selected(TRAIN)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_case_lists_block_overlap_and_warn_about_few(qtbot, registry, tmp_path, phantoms) -> None:
    panel = make_panel(qtbot, registry, tmp_path, phantoms)
    assert [c.case_id for c in panel.cases.cases[TRAIN]] == ["phantom11", "phantom12"]
    assert [c.case_id for c in panel.cases.cases[VAL]] == ["phantom13"]
    assert panel.cases.errors == [] and panel.start_button.isEnabled()
    assert any("validation" in w for w in panel.cases.warnings)  # one validation case is few
    assert any("training" in w for w in panel.cases.warnings)  # two training cases are few

    panel.cases.add_cases(VAL, [panel.cases.cases[TRAIN][0]])  # phantom11 on both sides
    assert any("phantom11" in e for e in panel.cases.errors)
    assert not panel.start_button.isEnabled()
    assert panel.start() is False and "phantom11" in panel.message.text()
    assert "phantom11" in panel.cases.problems.text()

    panel.cases.select(VAL, ["phantom11"])
    panel.cases.remove_selected(VAL)
    assert panel.cases.errors == [] and panel.start_button.isEnabled()


def test_settings_have_defaults_and_tooltips(qtbot, registry, tmp_path) -> None:
    panel = FinetunePanel(registry, CorrectedCases(tmp_path / "corrected.json"))
    qtbot.addWidget(panel)
    settings = panel.current_settings()
    assert settings.lr == pytest.approx(1e-4) and settings.batch_size == 16
    assert settings.augment and settings.adversarial and settings.device == "auto" and settings.amp == "auto"
    assert all(widget.toolTip() for widget in panel.settings_widgets)
    panel.set_settings(amp="off")
    assert panel.current_settings().amp == "off"
    assert not panel.start_button.isEnabled()  # no cases yet
    assert "kept model v1-" in panel.base_label.text()


@pytest.mark.slow
def test_start_shows_live_plots_and_cancel_stops_the_process(qtbot, registry, tmp_path, phantoms,
                                                              screenshots) -> None:
    panel = make_panel(qtbot, registry, tmp_path, phantoms, epochs=200, evaluate=False)
    active = registry.active().name
    assert panel.start(), panel.message.text()
    assert panel.state == "running" and not panel.start_button.isEnabled()
    process_job = panel.worker.job
    qtbot.waitUntil(lambda: len(panel.plots.points()["G"][0]) >= 2, timeout=RUN_TIMEOUT_MS)
    points = panel.plots.points()
    assert points["G"][0][:2] == [1.0, 2.0]
    assert all(len(points[name][1]) >= 2 for name in ("D", "WT", "TC", "ET"))
    assert all(0.0 <= v <= 1.0 for v in points["WT"][1])
    assert panel.device_label.text().startswith("Device: CPU") and panel.device_label.text().endswith("fp32")
    assert "Running for" in panel.time_label.text() and "left" in panel.time_label.text()
    assert len(points["G step"][0]) >= 2 and len(points["D step"][0]) >= 2
    (screenshots / SHOTS).mkdir(exist_ok=True)
    panel.grab().save(str(screenshots / SHOTS / "finetune_running.png"))
    panel.grab().save(str(screenshots / "finetune_running.png"))

    panel.cancel()
    assert panel.state == "cancelling"
    qtbot.waitUntil(lambda: panel.state == "idle", timeout=30_000)
    assert not process_job.running  # the training process is gone
    assert "Cancelled" in panel.message.text()
    assert registry.active().name == active  # untouched
    assert not any((registry.root / "staging").iterdir())  # the staged run was deleted
    assert panel.start_button.isEnabled() and panel.result is None


@pytest.mark.slow
def test_one_epoch_run_keep_makes_it_active_then_rollback(qtbot, registry, tmp_path, phantoms,
                                                          screenshots) -> None:
    panel = make_panel(qtbot, registry, tmp_path, phantoms, epochs=1)
    base = registry.active()
    changed = []
    panel.models_changed.connect(changed.append)
    assert panel.start(), panel.message.text()
    qtbot.waitUntil(lambda: panel.cell(0, 1) != "", timeout=RUN_TIMEOUT_MS)  # the base model measured
    before_wt = panel.cell(0, 1)
    qtbot.waitUntil(lambda: panel.state in ("finished", "idle"), timeout=RUN_TIMEOUT_MS)
    assert panel.state == "finished", panel.message.text()
    assert panel.result_box.keep_button.isEnabled() and panel.result_box.discard_button.isEnabled()
    assert panel.cell(0, 1) == before_wt
    for row in range(3):
        before, after = float(panel.cell(row, 1)), float(panel.cell(row, 2))
        assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
        assert panel.cell(row, 3) == f"{after - before:+.3f}"
    assert registry.active().name == base.name  # nothing changes before Keep
    (screenshots / SHOTS).mkdir(exist_ok=True)
    panel.grab().save(str(screenshots / SHOTS / "finetune_finished.png"))

    entry = panel.keep()
    assert entry is not None and entry.name.startswith("v2-")
    assert registry.active().name == entry.name and changed == [entry]
    assert entry.card.training.get("finetune", {}).get("base_version") == base.version
    assert not panel.result_box.keep_button.isEnabled() and entry.name in panel.message.text()
    assert not any((registry.root / "staging").iterdir())

    dialog = ModelsDialog(registry)
    qtbot.addWidget(dialog)
    dialog.setStyleSheet(panel.styleSheet())
    dialog.show()
    qtbot.waitExposed(dialog)
    assert [e.name for e in dialog.entries] == [SHIPPED, base.name, entry.name]
    dialog.select(entry.name)
    assert "Before / after" in dialog.card.toHtml() or "before" in dialog.card.toPlainText().lower()
    dialog.grab().save(str(screenshots / SHOTS / "models_dialog.png"))
    assert dialog.rollback().name == SHIPPED
    assert registry.active().name == SHIPPED
    assert not dialog.rollback_button.isEnabled()
    dialog.select(base.name)
    assert dialog.activate_selected().name == base.name
    assert registry.active().name == base.name


def test_a_crashed_training_process_leaves_the_active_model(qtbot, registry, tmp_path, phantoms) -> None:
    panel = make_panel(qtbot, registry, tmp_path, phantoms, epochs=200)
    active = registry.active().name
    assert panel.start(), panel.message.text()
    os.kill(panel.worker.job.pid, signal.SIGKILL)  # as the OOM killer would
    qtbot.waitUntil(lambda: panel.state == "idle", timeout=30_000)
    assert "crash" in panel.message.text() and "exit code -9" in panel.message.text()
    assert "active model is unchanged" in panel.message.text()
    assert registry.active().name == active
    assert not any((registry.root / "staging").iterdir())
    assert panel.start_button.isEnabled()


def test_discard_deletes_the_staged_run_and_keeps_the_active_model(qtbot, registry, tmp_path) -> None:
    panel = FinetunePanel(registry, CorrectedCases(tmp_path / "corrected.json"))
    qtbot.addWidget(panel)
    active = registry.active().name
    staged = registry.new_staging_dir()
    (staged / "card.json").write_text("{}")
    panel._staging = staged  # as start() leaves it
    panel._on_finished(SimpleNamespace(model_dir=staged, before=None, after=None, stopped_early=True,
                                       best_epoch=2, history=[1, 2, 3], seconds=75.0, device="CPU",
                                       warnings=["a warning from the run"], improved=lambda: False))
    assert panel.state == "finished" and not panel.start_button.isEnabled()
    assert "Best epoch 2 of 3 (stopped early)" in panel.result_box.summary.text()
    assert "Not evaluated" in panel.result_box.summary.text()
    assert "a warning from the run" in panel.notice_label.text()
    assert panel.start() is False  # keep or discard first
    panel.discard()
    assert not staged.exists() and registry.active().name == active
    assert panel.state == "idle" and panel.result is None
    assert not panel.result_box.keep_button.isEnabled()


def test_quitting_stops_the_run_and_deletes_what_it_staged(qtbot, registry, tmp_path, phantoms,
                                                           monkeypatch) -> None:
    from brainseg_gui.ui import finetune_worker

    monkeypatch.setattr(finetune_worker, "CANCEL_GRACE_S", 0.5)  # killed at once if it cannot stop
    panel = make_panel(qtbot, registry, tmp_path, phantoms, epochs=200)
    active = registry.active().name
    assert panel.start(), panel.message.text()
    process = panel.worker.job
    panel.shutdown()  # what the app does on quit
    assert not process.running
    assert not panel.worker.running
    assert not any((registry.root / "staging").iterdir())
    assert registry.active().name == active


@pytest.mark.slow
def test_each_step_moves_the_progress_and_the_loss_curve_before_the_first_epoch_ends(
        qtbot, registry, tmp_path, phantoms) -> None:
    panel = make_panel(qtbot, registry, tmp_path, phantoms, epochs=200, evaluate=False, steps_per_epoch=6)
    seen: list[tuple] = []  # what the panel shows right after each signal (it handles them first)
    panel.worker.step_done.connect(lambda e: seen.append(
        ("step", e.epoch, e.step, len(panel.plots.points()["G step"][0]), len(panel.plots.points()["G"][0]),
         panel.progress.value(), panel.message.text(), panel.time_label.text())))
    panel.worker.epoch_done.connect(lambda e: seen.append(("epoch", e.epoch)))
    assert panel.start(), panel.message.text()
    qtbot.waitUntil(lambda: ("epoch", 1) in seen, timeout=RUN_TIMEOUT_MS)

    first_epoch = seen[:seen.index(("epoch", 1))]
    assert first_epoch and all(entry[0] == "step" and entry[1] == 1 for entry in first_epoch)
    _, _, step, step_points, epoch_points, bar, message, clock = first_epoch[0]
    assert step == 1 and step_points == 1 and epoch_points == 0  # a point before any epoch ended
    assert bar > 0 and "epoch 1 of 200" in message and "step 1 of 6" in message
    assert "Running for" in clock and "left" in clock  # the time left, from the step rate
    bars = [entry[5] for entry in first_epoch]
    assert bars == sorted(bars)
    xs = panel.plots.points()["G step"][0]
    assert xs[0] == pytest.approx(1 / 6) and all(0 < x <= 1.0 for x in xs[:len(first_epoch)])  # epochs as fractions

    panel.worker.hold_events(True)  # no event reaches the panel from now on ...
    count = len(panel.plots.points()["G step"][0])
    before = panel.time_label.text()
    qtbot.waitUntil(lambda: panel.time_label.text() != before, timeout=3_000)  # ... yet the clock ticks
    assert len(panel.plots.points()["G step"][0]) == count
    panel.worker.hold_events(False)
    panel.cancel()
    qtbot.waitUntil(lambda: panel.state == "idle", timeout=30_000)
    assert not panel.clock.isActive()


def test_the_plots_count_epochs_on_the_x_axis(qtbot) -> None:
    plots = FinetunePlots()
    qtbot.addWidget(plots)
    plots.add_baseline({"WT": 0.5, "TC": 0.4, "ET": 0.3})
    for step in range(1, 9):
        plots.add_step(step / 4, 10.0 - step, 0.7)
    for epoch in (1, 2):
        plots.add_epoch(epoch, 8.0, 0.7, {"WT": 0.6, "TC": 0.5, "ET": 0.4})
    plots.resize(900, 260)
    points = plots.points()
    assert points["G step"][0][:5] == [0.25, 0.5, 0.75, 1.0, 1.25]
    assert points["WT"][0] == [0.0, 1.0, 2.0] and points["G"][0] == [1.0, 2.0]
    for plot in (plots.g_plot, plots.d_plot, plots.dice_plot):
        axis = plot.getAxis("bottom")
        assert axis.labelText == "epoch"
        levels = axis.tickValues(0, 2, 600)
        assert levels and all(spacing >= 1 and all(float(v).is_integer() for v in values) for spacing, values in levels)
        assert axis.tickStrings([0.0, 1.0, 2.0], 1.0, levels[0][0]) == ["0", "1", "2"]


def _validation_cases(shared_data: Path, *names: str) -> list:
    return [c for c in find_cases(shared_data / "brats2021") if c.case_id in names]


def test_a_validation_case_the_active_model_was_trained_on_is_flagged(qtbot, tmp_path, phantoms, shared_data,
                                                                       screenshots) -> None:
    registry = ModelRegistry(tmp_path / "shipped-active")  # nothing kept: the shipped model is the base
    assert registry.active().shipped
    panel = FinetunePanel(registry, CorrectedCases(tmp_path / "corrected.json"))
    qtbot.addWidget(panel)
    if STYLE.is_file():
        panel.setStyleSheet(STYLE.read_text(encoding="utf-8"))
    assert "trained on 12 cases" in panel.base_label.text()
    panel.cases.add_folder(TRAIN, phantoms)
    qtbot.waitUntil(lambda: len(panel.cases.cases[TRAIN]) == 3, timeout=10_000)
    panel.cases.add_cases(VAL, _validation_cases(shared_data, "BraTS2021_00014"))  # held out of its training
    assert panel.cases.inflated == {} and panel.cases.inflated_label.isHidden()

    panel.cases.add_cases(VAL, _validation_cases(shared_data, "BraTS2021_00003"))  # one of its training cases
    assert panel.cases.inflated == {"BraTS2021_00003": "BraTS2021_00003"}
    line = panel.cases.inflated_label
    assert not line.isHidden() and "BraTS2021_00003" in line.text() and "Dice before is inflated" in line.text()
    texts = [panel.cases.lists[VAL].item(row).text() for row in range(panel.cases.lists[VAL].count())]
    assert [t.startswith("⚠") for t in texts] == [False, True] and "inflated" in texts[1]
    assert panel.start_button.isEnabled()  # a warning, not a refusal
    panel.show()
    qtbot.waitExposed(panel)
    columns = [panel.splitter.widget(index) for index in range(panel.splitter.count())]
    qtbot.waitUntil(lambda: not any(area.verticalScrollBar().isVisible() for area in columns))  # all in view
    panel.grab().save(str(screenshots / "finetune_inflated.png"))

    # the result view: the "before" cells are starred and the case's own before Dice is named
    panel.result_box.set_inflated(panel.cases.inflated)
    scores = {"BraTS2021_00003": {r: RegionScore(0.95, 2.0) for r in REGIONS},
              "BraTS2021_00014": {r: RegionScore(0.75, 6.0) for r in REGIONS}}
    panel._on_evaluated("before", summarise(scores))
    assert panel.cell(0, 1) == "0.850*" and panel.cell(0, 4) == "4.0*" and panel.cell(0, 2) == ""
    note = panel.result_box.inflated_label
    assert not note.isHidden() and "BraTS2021_00003: WT 0.950" in note.text()
    panel.grab().save(str(screenshots / "finetune_inflated_result.png"))

    panel.cases.select(VAL, ["BraTS2021_00003"])
    panel.cases.remove_selected(VAL)
    assert panel.cases.inflated == {} and panel.cases.inflated_label.isHidden()


def test_the_window_fits_a_1366x768_screen(qtbot, registry, tmp_path, phantoms, screenshots) -> None:
    panel = make_panel(qtbot, registry, tmp_path, phantoms)
    panel._on_notice("collapse", "the discriminator wins outright since epoch 3 " * 3)  # a long notice
    free = SMALL_SCREEN.intersected(panel.screen().availableGeometry())
    assert free.width() <= 1366 and free.height() <= 768
    for hint in (panel.minimumSizeHint(), panel.minimumSize()):
        assert hint.width() <= free.width() - MARGIN.width() and hint.height() <= free.height() - MARGIN.height()
    panel.fit_to_screen(free)
    assert panel.width() <= free.width() - MARGIN.width() and panel.height() <= free.height() - MARGIN.height()
    assert panel.width() >= 1000 and panel.height() >= 600  # it still uses the room it has
    # without scrolling: Start, the clock, Keep, the plots and the settings are all in view
    wanted = (panel.start_button, panel.time_label, panel.result_box.keep_button, panel.plots,
              panel.settings_box.device)
    qtbot.waitUntil(lambda: all(_in_view(widget, panel) for widget in wanted), timeout=3_000)
    columns = [panel.splitter.widget(index) for index in range(panel.splitter.count())]
    qtbot.waitUntil(lambda: not any(area.verticalScrollBar().isVisible() for area in columns))
    assert panel.plots.width() >= 480 and panel.plots.height() >= 200
    panel.grab().save(str(screenshots / "finetune_1366x768.png"))


def _in_view(widget, panel: FinetunePanel) -> bool:
    """Whether all of `widget` shows in the window, not clipped by a scroll area's viewport."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QScrollArea

    top_left = widget.mapTo(panel, QPoint(0, 0))
    box = QRect(top_left, widget.size())
    for area in panel.findChildren(QScrollArea):
        if area.widget().isAncestorOf(widget):
            viewport = area.viewport()
            box_in_viewport = QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size())
            if not viewport.rect().contains(box_in_viewport):
                return False
    return widget.isVisible() and panel.rect().contains(box)
