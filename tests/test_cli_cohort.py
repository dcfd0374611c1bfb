"""`brainseg predict COHORT`: the places to run, their bad options, and a separate Dask cluster end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_support import one_error_line, run

pytest.importorskip("distributed", reason="cohorts run on Dask (distributed)")

TINY = (40, 48, 36)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    from brainseg_gui.core.phantom import write_phantom_case

    for seed in range(3):
        write_phantom_case(tmp_path / "cases", seed=seed, case_id=f"P{seed}", shape=TINY)
    return tmp_path / "cases"


@pytest.mark.parametrize(("options", "words"), [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give one of them"),
    (["--cluster-config", "x.json"], "--cluster-config goes with --cluster"),
    (["--workers", "0", "--threads-per-worker", "2"], "--threads-per-worker does not apply"),
    (["--workers", "-1"], "expected 0 to 1024"),
    (["--workers", "two"], "expected a whole number"),
])
def test_clashing_or_bad_places_are_refused_before_anything_runs(capsys: pytest.CaptureFixture[str], cohort: Path,
                                                                tiny_model: Path, tmp_path: Path,
                                                                options: list[str], words: str) -> None:
    status, _, err = run(capsys, "predict", cohort, "-o", tmp_path / "out", "--model", tiny_model, *options)
    assert status == 2 and words in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_or_a_missing_batch_system_is_one_line(capsys: pytest.CaptureFixture[str],
                                                                      cohort: Path, tiny_model: Path,
                                                                      tmp_path: Path) -> None:
    status, _, err = run(capsys, "predict", cohort, "-o", tmp_path / "out", "--model", tiny_model,
                         "--scheduler", "tcp://127.0.0.1:9")
    assert status == 2 and "no Dask scheduler answers at tcp://127.0.0.1:9" in one_error_line(err)
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        status, _, err = run(capsys, "predict", cohort, "-o", tmp_path / "out", "--model", tiny_model,
                             "--cluster", "slurm")
        assert status == 2 and "needs dask-jobqueue" in one_error_line(err)


def test_in_this_process_then_a_rerun_skips_everything(capsys: pytest.CaptureFixture[str], cohort: Path,
                                                      tiny_model: Path, tmp_path: Path) -> None:
    argv = ["predict", cohort, "-o", tmp_path / "out", "--model", tiny_model, "--device", "cpu", "--workers", "0"]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert "running on this process" in out and "3 segmented" in out
    status, out, err = run(capsys, *argv)
    assert status == 0 and "3 skipped" in out
    (cohort / "P1" / "P1_t2.nii.gz").write_bytes(b"not an image")
    status, out, err = run(capsys, *argv)
    assert status == 2 and "2 skipped, 1 failed" in out  # the failed case is reported, the others kept
    assert "P1: FAILED" in out


@pytest.mark.slow
def test_a_separate_dask_scheduler_with_two_workers(capsys: pytest.CaptureFixture[str], cohort: Path,
                                                    tiny_model: Path, tmp_path: Path) -> None:
    """As on a group of servers: `dask scheduler` and two `dask worker` processes started by hand."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip("the dask command is not installed beside this Python")
    address_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    processes = [subprocess.Popen([str(dask), "scheduler", "--scheduler-file", str(address_file), "--port", "0",
                                   "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            processes.append(subprocess.Popen([str(dask), "worker", "--scheduler-file", str(address_file),
                                               "--nthreads", "1", "--no-dashboard"], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = _wait_for_workers(address_file, 2)
        status, out, err = run(capsys, "predict", cohort, "-o", tmp_path / "out", "--model", tiny_model,
                               "--device", "cpu", "--scheduler", address)
        assert status == 0, err
        assert f"running on Dask scheduler {address}" in out and "3 segmented" in out
        rows = (tmp_path / "out" / "cohort.csv").read_text().splitlines()
        assert len(rows) == 4 and all(",segmented," in row for row in rows[1:])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _wait_for_workers(address_file: Path, count: int, timeout: float = 60.0) -> str:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while not address_file.exists():
        if time.monotonic() > deadline:
            pytest.fail("the Dask scheduler did not start")
        time.sleep(0.2)
    address = json.loads(address_file.read_text())["address"]
    with Client(address, timeout="20s") as client:
        client.wait_for_workers(count, timeout=max(1.0, deadline - time.monotonic()))
    return address
