"""The status bar's progress and Cancel: shown while a step runs, gone when it has ended, even when
the step ended before the bar started listening."""

from __future__ import annotations

import threading
import time

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.ui.activity import ActivityBar
from brainseg_gui.ui.workers import JobRunner


def test_a_step_that_ended_at_once_leaves_no_bar_behind(qtbot) -> None:
    runner, bar = JobRunner(), ActivityBar()
    qtbot.addWidget(bar)
    job = runner.start("instant", lambda **_kw: 1)
    qtbot.waitUntil(lambda: job.done)
    bar.track(job, "Stop it")
    qtbot.waitUntil(lambda: not bar.isVisible(), timeout=2000)
    assert bar.job is None


def test_progress_and_cancel_follow_the_running_step(qtbot) -> None:
    runner, bar = JobRunner(), ActivityBar()
    qtbot.addWidget(bar)
    bar.show()
    started = threading.Event()

    def work(*, progress, cancel):
        progress(0.25, "a quarter")
        started.set()
        while not cancel.cancelled:
            time.sleep(0.01)
        raise Cancelled("stopped")

    job = runner.start("slow", work)
    try:
        bar.track(job, "Stop the slow step")
        qtbot.waitUntil(lambda: bar.progress.value() == 250, timeout=5000)
        assert bar.isVisible() and bar.cancel_button.isVisibleTo(bar)
        assert bar.cancel_button.toolTip() == "Stop the slow step"
        bar.cancel_button.click()
        qtbot.waitUntil(lambda: job.done and not bar.isVisible(), timeout=5000)
    finally:
        job.cancel()  # never leave a thread looping behind a failed assertion


def test_a_job_that_waits_long_does_not_hold_up_the_others(qtbot) -> None:
    """The fine-tune watcher waits for hours: a study must still open while it (and more) run."""
    runner = JobRunner()
    waiting = [runner.start(f"waiting {i}", _wait_until_cancelled) for i in range(3)]
    try:
        quick = runner.start("quick", lambda **_kw: "done")
        qtbot.waitUntil(lambda: quick.done, timeout=5000)
    finally:
        for job in waiting:
            job.cancel()
        runner.wait(5000)


def _wait_until_cancelled(*, progress, cancel) -> None:
    while not cancel.cancelled:
        time.sleep(0.01)
    raise Cancelled("stopped")
