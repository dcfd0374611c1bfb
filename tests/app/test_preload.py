"""The study named on the command line, read from the command's start (app/preload.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from brainseg_gui.app import tasks
from brainseg_gui.app.preload import StudyPreload
from brainseg_gui.core.errors import Cancelled, StudyLoadError
from brainseg_gui.core.progress import CancelToken, no_progress
from tests.ui.conftest import write_toy_case


def _wait(preload: StudyPreload, path: Path, cancel: CancelToken | None = None):
    read = preload.take(path)
    assert read is not None
    return read(progress=no_progress, cancel=cancel or CancelToken())


def test_it_gives_what_the_viewer_would_read_once(tmp_path: Path) -> None:
    case = write_toy_case(tmp_path / "toy")
    preload = StudyPreload(case)
    assert preload.take(tmp_path / "other") is None  # another path: the viewer reads that itself
    volume = _wait(preload, case)
    own = tasks.open_study(case, progress=no_progress, cancel=CancelToken())
    assert volume.study.case_id == own.study.case_id == "toy"
    assert np.array_equal(volume.study.grid.affine, own.study.grid.affine)
    for name, image in own.study.images.items():
        assert np.array_equal(volume.study.images[name], image)
    assert np.array_equal(volume.study.labels, own.study.labels)
    assert preload.take(case) is None  # once: opening it again later reads the file again
    assert preload._volume is None  # handed over, not kept


def test_an_error_reaches_the_viewer_as_its_own_would(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    bad = tmp_path / "broken" / "broken_t1.nii.gz"
    bad.write_bytes(b"not a nifti file")
    with pytest.raises(StudyLoadError) as own:
        tasks.open_study(bad, progress=no_progress, cancel=CancelToken())
    with pytest.raises(StudyLoadError) as preloaded:
        _wait(StudyPreload(bad), bad)
    assert str(preloaded.value) == str(own.value)


def test_cancelling_the_wait_stops_the_read_and_keeps_nothing(tmp_path: Path, monkeypatch) -> None:
    release, cancelled_inside = threading.Event(), []

    def slow_open(path: Path, *, progress, cancel: CancelToken):
        release.wait(10)
        cancelled_inside.append(cancel.cancelled)
        return "a volume"

    monkeypatch.setattr(tasks, "open_study", slow_open)
    case = write_toy_case(tmp_path / "toy")
    preload = StudyPreload(case)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        _wait(preload, case, cancel)
    release.set()
    assert preload._done.wait(10)
    assert cancelled_inside == [True] and preload._volume is None


def test_a_dicom_study_is_left_to_the_viewer(tmp_path: Path, monkeypatch) -> None:
    reads: list[Path] = []
    monkeypatch.setattr("brainseg_gui.core.cases.is_dicom_study", lambda path: True)
    monkeypatch.setattr(tasks, "open_study", lambda path, **kw: reads.append(path) or "read by the viewer")
    preload = StudyPreload(tmp_path)
    assert preload._done.wait(10) and reads == []  # nothing read in the preload thread
    assert _wait(preload, tmp_path) == "read by the viewer" and reads == [tmp_path]


def test_whatever_fails_in_the_thread_ends_the_wait_with_that_error(tmp_path: Path, monkeypatch) -> None:
    def broken(path: Path) -> bool:
        raise RuntimeError("the listing failed")

    monkeypatch.setattr("brainseg_gui.core.cases.is_dicom_study", broken)
    with pytest.raises(RuntimeError, match="the listing failed"):
        _wait(StudyPreload(tmp_path), tmp_path)
