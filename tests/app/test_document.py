"""The Document owns one study; the Workspace replaces it and cuts every event of the old one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.document import Document, Role, Workspace, measurements_path
from brainseg_gui.app.edit_settings import Tool
from brainseg_gui.app.region_codes import BRATS_LABEL_CODE
from brainseg_gui.core.labels import to_regions
from brainseg_gui.core.orientation import Reorientation
from tests.ui.conftest import make_toy_study


@dataclass
class Settings:
    """What the edit tools read (the viewer's state satisfies the same protocol)."""

    tool: Tool = Tool.BRUSH
    brush_mm: float = 3.0
    brush_3d: bool = False
    label: str = "ED"
    erase_only: bool = False
    threshold: tuple[float, float] | None = None
    sequence: str = "t1ce"
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    crosshair: tuple[int, int, int] = (0, 0, 0)


@pytest.fixture
def volume() -> DisplayVolume:
    return DisplayVolume.from_study(make_toy_study())


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(Settings(), tmp_path / "state")


def test_the_workspace_starts_with_an_empty_document(workspace: Workspace) -> None:
    assert workspace.document.empty and workspace.document.editing.session is None


def test_replacing_the_document_ends_the_old_one_and_cuts_its_events(workspace: Workspace, volume) -> None:
    heard: list[str] = []
    workspace.segmented.connect(lambda _r: heard.append("segmented"))
    workspace.mask_changed.connect(lambda _box: heard.append("mask"))
    workspace.message.connect(heard.append)
    first = workspace.replace(workspace.new_document(volume, source=Path("/a")))
    first.editing.start_default()
    first.editing.press("axial", (20, 24, 10))
    first.editing.release()
    assert "mask" in heard and first.editing.unsaved
    heard.clear()

    second = workspace.replace(workspace.new_document(volume, source=Path("/b")))
    assert first.closed and first.editing.session is None  # ended (its journal keeps the edits)
    assert second.editing.session is None and second.segmentation is None
    first.segmented.emit(object())  # a late worker result for the old study...
    first.message.emit("old study's message")
    first.editing.mask_changed.emit(None)
    assert heard == []  # ...reaches nobody
    second.message.emit("new")
    assert heard == ["new"]


def test_a_segmentation_code_made_by_the_worker_is_not_made_again(workspace: Workspace, volume) -> None:
    document = workspace.replace(workspace.new_document(volume))
    labels = np.asarray(volume.study.labels)
    code = np.ascontiguousarray(Reorientation(volume.study.grid).apply(BRATS_LABEL_CODE[labels]))
    document.editing.start(labels, code_ras=code)
    assert document.editing.code_ras is code  # shown as the worker made it: no second re-orientation
    np.testing.assert_array_equal(document.editing.ai_code_ras, code)


def test_measurements_are_the_studys_saved_and_read_back(workspace: Workspace, volume, tmp_path) -> None:
    first = workspace.replace(workspace.new_document(volume))
    ruler = first.measurements.add_ruler((10.0, 10.0, 5.0), (30.0, 10.0, 5.0))
    path = measurements_path(volume, tmp_path / "state")
    assert path.is_file()
    length = first.measurements.length_mm(ruler)

    again = workspace.replace(workspace.new_document(volume))  # the same study opened again
    assert [again.measurements.length_mm(i) for i in again.measurements.rulers] == [pytest.approx(length)]
    first.measurements.add_ruler((1.0, 1.0, 1.0), (2.0, 2.0, 2.0))  # the closed document: heard by nobody
    assert len(again.measurements.rulers) == 1

    review = workspace.new_document(volume, role=Role.REVIEW)  # a brain-mask check keeps no annotations
    assert review.measurements_file is None and review.measurements.empty


def test_a_damaged_measurement_file_is_set_aside_and_said(workspace: Workspace, volume, tmp_path) -> None:
    path = measurements_path(volume, tmp_path / "state")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    document = workspace.new_document(volume)
    assert document.measurements.empty
    assert document.restore_problem is not None and "Measurements not restored" in document.restore_problem
    assert path.with_suffix(".unreadable").read_text() == "{not json"  # kept, never deleted


def test_truth_volumes_come_from_the_studys_own_labels(workspace: Workspace, volume) -> None:
    document = Document(volume, Settings())
    volumes = document.truth_volumes_ml()
    assert volumes is not None and volumes["WT"] > volumes["TC"] > volumes["ET"] > 0
    labels, voxel_ml = np.asarray(volume.study.labels), volume.study.grid.voxel_volume_ml
    convention = volume.study.label_convention
    expected = {region: float(mask.sum()) * voxel_ml
                for region, mask in zip(("WT", "TC", "ET"), to_regions(labels, convention))}
    assert volumes == pytest.approx(expected)


def test_rano_is_measured_automatically_and_a_hand_adjusted_one_is_kept(workspace: Workspace, volume) -> None:
    document = workspace.replace(workspace.new_document(volume))
    heard: list[object] = []
    workspace.measurements_changed.connect(lambda: heard.append(document.measurements.rano))
    document.editing.start(np.asarray(volume.study.labels))  # the toy's ET: a 5 mm ball
    rano = document.measurements.rano
    assert rano is not None and not rano.adjusted and heard and heard[-1] is rano
    assert 6.0 <= rano.long_mm <= 12.0 and rano.short_mm <= rano.long_mm
    document.measurements.adjust_rano(rano.long_axis, rano.short_axis)  # the user moved an end
    document.editing.press("axial", (5, 5, 5))  # an edit elsewhere...
    document.editing.release()
    assert document.measurements.rano is not None and document.measurements.rano.adjusted  # ...keeps theirs

    review = workspace.replace(workspace.new_document(volume, role=Role.REVIEW))
    review.editing.start(np.asarray(volume.study.labels))
    assert review.measurements.rano is None  # a brain mask under check is not measured as a tumour
