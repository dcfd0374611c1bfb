"""The fine-tune in a spawned child process: events arrive, cancel stops it, CaseFiles travel."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch

from brainseg_gui.core.cases import find_case
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml import model_registry
from brainseg_gui.ml.checkpoint import ModelCard, save_model
from brainseg_gui.ml.finetune import EpochDone, FinetuneSettings, Started
from brainseg_gui.ml.finetune_job import Failed, FinetuneJob, Finished, Progress, _portable, _restore
from brainseg_gui.ml.networks import build_generator

TINY = {"widths": [4, 8]}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Path], Path]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path / "user-models"))
    cases = [write_phantom_case(tmp_path / "data", seed=s, shape=(32, 32, 32), case_id=f"P_{s}") for s in (1, 2, 3)]
    torch.manual_seed(0)
    base = tmp_path / "base"
    save_model(base, build_generator("generator3d", TINY),
               ModelCard(architecture="generator3d", config=TINY, resolution_mm=2.0))
    return cases, base


def test_case_files_survive_the_trip_to_the_child(tmp_path: Path) -> None:
    case = write_phantom_case(tmp_path, seed=1, shape=(24, 24, 24), case_id="P_1")
    files = dataclasses.replace(find_case(case), seg=tmp_path / "corrected.nii.gz")
    import pickle

    back = _restore(pickle.loads(pickle.dumps(_portable(files))))
    assert back == files and _restore(_portable(case)) == case


@pytest.mark.slow
def test_a_job_reports_events_and_finishes(setup: tuple[list[Path], Path], tmp_path: Path) -> None:
    cases, base = setup
    settings = FinetuneSettings(epochs=2, steps_per_epoch=1, batch_size=2, patch_size=16, device="cpu",
                                patience=0, evaluate=False)
    job = FinetuneJob.start([cases[0], find_case(cases[1])], [cases[2]], tmp_path / "run", base_model=base,
                            settings=settings)
    result = job.wait(timeout=240)
    events = job.poll()
    assert result is not None, job.failure
    assert any(isinstance(e, Started) for e in events) and any(isinstance(e, Progress) for e in events)
    assert [e.epoch for e in events if isinstance(e, EpochDone)] == [1, 2]
    assert isinstance(events[-1], Finished) and events[-1].result.model_dir == tmp_path / "run"
    assert (tmp_path / "run" / "card.json").is_file()
    assert not job.running  # wait() returns once the child has exited


@pytest.mark.slow
def test_cancel_stops_the_child(setup: tuple[list[Path], Path], tmp_path: Path) -> None:
    cases, base = setup
    settings = FinetuneSettings(epochs=500, steps_per_epoch=1, batch_size=2, patch_size=16, device="cpu",
                                patience=0, evaluate=False)
    job = FinetuneJob.start(cases[:2], [cases[2]], tmp_path / "run", base_model=base, settings=settings)
    seen: list[object] = []
    deadline = time.monotonic() + 240
    while not any(isinstance(e, EpochDone) for e in seen) and time.monotonic() < deadline:
        seen += job.poll()
        time.sleep(0.1)
    job.cancel(grace_s=30)
    job.wait(timeout=60)
    seen += job.poll()
    assert job.result is None and job.failure == Failed("cancelled", "cancelled by the user")
    assert isinstance(seen[-1], Failed) and not job.running


def test_cancel_after_the_child_has_ended_returns_at_once(setup: tuple[list[Path], Path], tmp_path: Path) -> None:
    """A child that ended on its own (here: a case it cannot read) must not make cancel() hang."""
    import threading

    cases, base = setup
    job = FinetuneJob.start([tmp_path / "missing"], [cases[2]], tmp_path / "run", base_model=base,
                            settings=FinetuneSettings(epochs=1, device="cpu", evaluate=False))
    job.wait(timeout=120)
    assert not job.running and job.failure is not None and job.failure.kind == "error"
    done = threading.Event()
    threading.Thread(target=lambda: (job.cancel(grace_s=1), done.set()), daemon=True).start()
    assert done.wait(10), "cancel() blocked on a child that had already exited"
