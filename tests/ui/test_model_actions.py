"""The main window's model hooks: exported corrections become fine-tune cases; segmentation follows
the active model of the registry (Set active, rollback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainseg_gui.app.corrected_cases import CorrectedCases
from brainseg_gui.core.io import load_study
from brainseg_gui.ml.checkpoint import ModelCard, save_model
from brainseg_gui.ml.model_registry import SHIPPED, ModelRegistry
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ui.main_window import MainWindow
from tests.ui.conftest import toy_arrays

TINY_NET = {"in_channels": 4, "out_channels": 3, "widths": [4, 8], "convs_per_level": 1, "down": "pool",
            "deep_supervision": False}
TIMEOUT_MS = 60_000


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAINSEG_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def make_window(qtbot, settings, monkeypatch) -> MainWindow:
    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def open_study(qtbot, window: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        window.open_study(folder)


def test_exported_correction_is_offered_for_finetuning(qtbot, settings, monkeypatch, models_dir, toy_case,
                                                       tmp_path) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_study(qtbot, window, toy_case)
    window.editing.start_default()
    window.editing.session.labels[0, 0, 0] = 1  # the edit a user would paint (NCR in a corner)
    mask = tmp_path / "out" / "toy_corrected.nii.gz"
    mask.parent.mkdir()
    assert window.exporter.export_mask(mask, blocking=True) == [mask, mask.with_name("toy_corrected.json")]

    records = window.models.corrected.all()
    assert [(r.case_id, r.mask) for r in records] == [("toy", mask.resolve())]
    assert sorted(records[0].files) == ["flair", "t1", "t1ce", "t2"]
    assert records[0].case_files().seg_convention == window.state.convention.value  # never guessed
    study = load_study(records[0].case_files())  # what the fine-tune will read
    _, labels, _ = toy_arrays()
    expected = labels.copy()
    expected[0, 0, 0] = 1
    np.testing.assert_array_equal(study.labels, expected)

    window.exporter.export_mask(mask, overwrite=True, blocking=True)  # exported again: one record
    assert len(CorrectedCases(window.models.corrected.path).all()) == 1
    saved = json.loads(window.models.corrected.path.read_text())
    assert saved["cases"][0]["mask"] == str(mask.resolve())

    # Segmentation > Fine-tune opens the panel, which offers the correction as a case
    action = next(a for a in window.menuBar().actions() if a.text() == "&Segmentation")
    finetune = next(a for a in action.menu().actions() if a.text().startswith("&Fine-tune"))
    monkeypatch.delitem(sys.modules, "brainseg_gui.ui.finetune_panel", raising=False)  # as in a fresh app: torch not loaded
    finetune.trigger()  # loads in a worker, then opens
    qtbot.waitUntil(lambda: window.models.panel is not None, timeout=TIMEOUT_MS)
    panel = window.models.panel
    assert panel.isVisible()
    assert window.models.show_finetune() is panel  # loaded now: at once
    assert panel.cases.add_corrected("val", window.models.corrected.all()) == 1
    assert [c.case_id for c in panel.cases.cases["val"]] == ["toy"]
    assert panel.cases.cases["val"][0].seg == mask.resolve()
    assert "corrected in BrainSeg" in panel.cases.lists["val"].item(0).text()


def test_corrected_cases_skip_missing_files_and_survive_a_broken_file(tmp_path, toy_study) -> None:
    store = CorrectedCases(tmp_path / "state" / "corrected.json")
    assert store.all() == []
    gone = tmp_path / "gone.nii.gz"
    gone.write_bytes(b"x")
    sources = {name: gone for name in toy_study.images}
    study = type(toy_study)(toy_study.case_id, toy_study.grid, toy_study.images, sources=sources)
    store.record(study, gone, "brats")
    assert len(store.all()) == 1
    gone.unlink()
    assert store.all() == [] and len(store.all(existing_only=False)) == 1
    store.path.write_text("{not json")
    assert store.all() == []


def test_segmentation_follows_the_active_model(qtbot, settings, monkeypatch, models_dir, toy_case,
                                               tmp_path) -> None:
    torch.manual_seed(0)
    card = save_model(tmp_path / "tiny", build_generator("generator3d", TINY_NET),
                      ModelCard(architecture="generator3d", config=TINY_NET, resolution_mm=2.0))
    kept = ModelRegistry(models_dir).keep(tmp_path / "tiny", activate=False)
    window = make_window(qtbot, settings, monkeypatch)
    open_study(qtbot, window, toy_case)
    window.models.show_models()  # opens once the model tools have loaded (in a worker if need be)
    qtbot.waitUntil(lambda: window.models.dialog is not None, timeout=TIMEOUT_MS)
    dialog = window.models.dialog
    dialog.select(kept.name)
    slot = window.predictors
    assert dialog.activate_selected().name == kept.name
    assert window.predictors is not slot  # the next segmentation loads the new active model
    assert kept.name in window.segment_panel.model_label.text()

    with qtbot.waitSignal(window.segmentation_done, timeout=TIMEOUT_MS) as blocker:
        window.run_segmentation()
    assert blocker.args[0].model_version == card.version

    slot = window.predictors
    assert window.models.rollback().name == SHIPPED
    assert ModelRegistry(models_dir).active().name == SHIPPED
    assert window.predictors is not slot and window.predictors.loaded is None
    assert dialog.entries[0].active and not dialog.rollback_button.isEnabled()


def test_the_active_model_is_named_before_the_first_segmentation(qtbot, settings, monkeypatch, models_dir,
                                                                  toy_case) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_study(qtbot, window, toy_case)  # named once the first study is drawn (reading it loads torch)
    shipped = ModelRegistry().active()
    qtbot.waitUntil(lambda: shipped.version in window.segment_panel.model_label.text(), timeout=TIMEOUT_MS)
    assert "loads at the first segmentation" in window.segment_panel.model_label.text()
