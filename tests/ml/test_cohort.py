"""Cohorts (ml/cohort.py): in this process or on a LocalCluster, the same outputs; resumable, idempotent.

Phantom cases and a tiny random model: the masks mean nothing, the bookkeeping is what is tested:
a 2-worker LocalCluster writes exactly what the in-process run writes; a rerun skips finished
cases and redoes those whose inputs or model changed; a corrupt case is a failed row, never the
end of the cohort; a worker killed mid-case loses nothing; a case that kills every worker is
given up after MAX_ATTEMPTS; an interrupted run lists what it did not do.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui.core.cases import find_cases
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml.cohort import (
    COHORT_CSV,
    COHORT_HTML,
    COHORT_LOG,
    FAILED,
    MAX_ATTEMPTS,
    NOT_RUN,
    SEGMENTED,
    SKIPPED,
    CohortSettings,
    read_rows,
    run_cohort,
    segment_case,
)
from brainseg_gui.ml.cohort_cluster import local_shape, open_client

pytest.importorskip("distributed", reason="cohorts run on Dask (distributed)")

SHAPE = (40, 48, 36)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    for index in range(4):
        write_phantom_case(tmp_path / "cases", seed=index, case_id=f"C{index}", shape=SHAPE)
    return tmp_path / "cases"


def _settings(model: Path) -> CohortSettings:
    return CohortSettings(model_dir=model, device="cpu", torch_threads=1)


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*_pred.nii.gz"))}


def _statuses(folder: Path) -> dict[str, str]:
    return {row["case"]: row["status"] for row in read_rows(folder / COHORT_CSV)}


def _two_workers():  # type: ignore[no-untyped-def]
    return open_client(shape=local_shape(cores=2, workers=2, threads_per_worker=1))


@pytest.mark.slow
def test_a_local_cluster_writes_what_the_in_process_run_writes(cohort: Path, tiny_model: Path, tmp_path: Path) -> None:
    cases = find_cases(cohort)
    alone = run_cohort(cases, tmp_path / "alone", _settings(tiny_model))
    with _two_workers() as client:
        spread = run_cohort(cases, tmp_path / "spread", _settings(tiny_model), client=client)
    assert [r.status for r in alone] == [r.status for r in spread] == [SEGMENTED] * 4
    assert len({r.worker for r in spread}) == 2  # both workers took cases
    first, second = _labels(tmp_path / "alone"), _labels(tmp_path / "spread")
    assert first.keys() == second.keys() and len(first) == 4
    assert all(np.array_equal(first[name], second[name]) for name in first)
    for folder in (tmp_path / "alone", tmp_path / "spread"):
        assert {p.name for p in folder.glob("*_report.html")} == {f"C{i}_report.html" for i in range(4)}
        assert "C0_report.html" in (folder / COHORT_HTML).read_text()
        assert (folder / COHORT_LOG).read_text().count("segmented") == 4


def test_a_rerun_skips_finished_cases_and_redoes_changed_ones(cohort: Path, tiny_model: Path, tmp_path: Path,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path / "out"
    run_cohort(find_cases(cohort), out, _settings(tiny_model))
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*_pred.nii.gz")}
    rows = run_cohort(find_cases(cohort), out, _settings(tiny_model))
    assert [r.status for r in rows] == [SKIPPED] * 4 and rows[0].volumes_ml  # volumes read back from the sidecar
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_pred.nii.gz")} == written
    # one input changed: that case only is redone
    flair = cohort / "C2" / "C2_flair.nii.gz"
    image = nib.load(flair)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj) * 1.5, image.affine), flair)
    assert _statuses_of(run_cohort(find_cases(cohort), out, _settings(tiny_model))) == {
        "C0": SKIPPED, "C1": SKIPPED, "C2": SEGMENTED, "C3": SKIPPED}
    # another model: every case is redone
    import torch

    from brainseg_gui.ml.checkpoint import ModelCard, read_card, save_model
    from brainseg_gui.ml.networks import build_generator

    card = read_card(tiny_model)
    torch.manual_seed(1)
    other = tmp_path_factory.mktemp("other_model")
    save_model(other, build_generator(card.architecture, dict(card.config)),
               ModelCard(architecture=card.architecture, config=dict(card.config), resolution_mm=card.resolution_mm))
    rows = run_cohort(find_cases(cohort), out, _settings(other))
    assert [r.status for r in rows] == [SEGMENTED] * 4
    assert {r.model_version for r in rows} == {read_card(other).version} != {card.version}


def _statuses_of(rows: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {row.case_id: row.status for row in rows}


def test_a_corrupt_case_is_a_failed_row_and_the_cohort_goes_on(cohort: Path, tiny_model: Path,
                                                               tmp_path: Path) -> None:
    t1 = cohort / "C1" / "C1_t1.nii.gz"
    t1.write_bytes(t1.read_bytes()[:300])  # truncated
    rows = run_cohort(find_cases(cohort), tmp_path / "out", _settings(tiny_model))
    assert _statuses_of(rows) == {"C0": SEGMENTED, "C1": FAILED, "C2": SEGMENTED, "C3": SEGMENTED}
    failed = next(row for row in read_rows(tmp_path / "out" / COHORT_CSV) if row["case"] == "C1")
    assert "C1_t1.nii.gz" in failed["error"] and "\n" not in failed["error"]
    page = (tmp_path / "out" / COHORT_HTML).read_text()
    assert page.index(">C1<") < page.index("C0_report.html")  # the failed case is listed first
    assert not (tmp_path / "out" / "C1_pred.nii.gz").exists()


def test_an_interrupted_run_lists_what_it_did_not_do_and_a_rerun_finishes(cohort: Path, tiny_model: Path,
                                                                          tmp_path: Path) -> None:
    def interrupt(row, done, total):  # type: ignore[no-untyped-def]
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cohort(find_cases(cohort), tmp_path / "out", _settings(tiny_model), on_row=interrupt)
    assert _statuses(tmp_path / "out") == {"C0": SEGMENTED, "C1": SEGMENTED, "C2": NOT_RUN, "C3": NOT_RUN}
    rows = run_cohort(find_cases(cohort), tmp_path / "out", _settings(tiny_model))
    assert _statuses_of(rows) == {"C0": SKIPPED, "C1": SKIPPED, "C2": SEGMENTED, "C3": SEGMENTED}


def _dies_once_on(case_id: str, marker: Path):  # type: ignore[no-untyped-def]
    """A task that kills its own worker process the first time it meets `case_id` (pickled by value)."""

    def task(fields, out_dir, settings):  # type: ignore[no-untyped-def]
        if fields["case_id"] == case_id and not marker.exists():
            marker.write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return segment_case(fields, out_dir, settings)

    return task


def _always_dies_on(case_id: str):  # type: ignore[no-untyped-def]
    def task(fields, out_dir, settings):  # type: ignore[no-untyped-def]
        if fields["case_id"] == case_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return segment_case(fields, out_dir, settings)

    return task


@pytest.mark.slow
def test_a_worker_killed_mid_case_loses_nothing(cohort: Path, tiny_model: Path, tmp_path: Path) -> None:
    with _two_workers() as client:
        rows = run_cohort(find_cases(cohort), tmp_path / "out", _settings(tiny_model), client=client,
                          task=_dies_once_on("C1", tmp_path / "killed"))
    assert (tmp_path / "killed").exists()  # a worker did die in the middle of C1
    assert [r.status for r in rows] == [SEGMENTED] * 4
    reference = run_cohort(find_cases(cohort), tmp_path / "alone", _settings(tiny_model))
    assert [r.status for r in reference] == [SEGMENTED] * 4
    first, second = _labels(tmp_path / "out"), _labels(tmp_path / "alone")
    assert all(np.array_equal(first[name], second[name]) for name in first) and len(first) == 4


@pytest.mark.slow
def test_a_case_that_kills_every_worker_is_given_up(cohort: Path, tiny_model: Path, tmp_path: Path) -> None:
    with _two_workers() as client:
        rows = run_cohort(find_cases(cohort), tmp_path / "out", _settings(tiny_model), client=client,
                          task=_always_dies_on("C3"))
    # a case finished on a worker that later dies is redone and finds its output written: skipped
    statuses = _statuses_of(rows)
    assert statuses.pop("C3") == FAILED and f"died {MAX_ATTEMPTS} times" in rows[3].error
    assert set(statuses) == {"C0", "C1", "C2"} and set(statuses.values()) <= {SEGMENTED, SKIPPED}
    assert len(_labels(tmp_path / "out")) == 3


@pytest.mark.slow
def test_a_dicom_study_is_a_cohort_member_prepared_by_its_worker(cohort: Path, tiny_model: Path, tmp_path: Path,
                                                                real_case: Path) -> None:
    """A PACS export (patient/study/series tree) beside NIfTI cases: found as one member, not read by
    the process that hands out work, staged and prepared where it runs, labels on its T1ce series."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
    from dicom_study_builder import build_study

    from brainseg_gui.core.cases import find_cohort

    built = build_study(real_case, cohort / "PACS_EXPORT", vendor="siemens", thin=True)
    members = find_cohort(cohort)
    assert [m for m in members if isinstance(m, Path)] == [cohort / "PACS_EXPORT"]
    assert len(members) == 5
    rows = run_cohort(members, tmp_path / "out", _settings(tiny_model))
    assert all(row.status == SEGMENTED for row in rows), [row.line() for row in rows]
    dicom_row = next(row for row in rows if "prepared" in "; ".join(row.flags))
    assert "t1ce grid" in "; ".join(dicom_row.flags)
    written = nib.load(dicom_row.output)
    assert written.shape == built.truth_grid.shape  # the T1ce series' own grid, not the prepared 1 mm one
    again = run_cohort(find_cohort(cohort), tmp_path / "out", _settings(tiny_model))
    assert [row.status for row in again] == [SKIPPED] * 5


def test_volume_flags_point_a_reviewer_at_empty_and_tiny_enhancing_results() -> None:
    from brainseg_gui.ml.cohort import SMALL_ET_ML, volume_flags

    assert volume_flags({"WT": 0.0, "TC": 0.0, "ET": 0.0}) == ["no tumour found"]
    assert volume_flags({"WT": 40.0, "TC": 10.0, "ET": SMALL_ET_ML / 2}) == ["small ET (0.25 mL < 0.5 mL)"]
    assert volume_flags({"WT": 40.0, "TC": 10.0, "ET": 0.0}) == []  # no enhancement is a finding, not noise
    assert volume_flags({"WT": 40.0, "TC": 10.0, "ET": 3.0}) == []


def test_the_local_cluster_is_sized_from_cores_gpus_memory_and_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    from brainseg_gui.ml import cohort_cluster
    from brainseg_gui.ml.cohort_cluster import ClusterShape

    monkeypatch.setattr(cohort_cluster, "physical_memory", lambda: 64 << 30)
    assert local_shape(cores=2) == ClusterShape(2, 1, 1)  # one worker per core, torch on one thread each
    assert local_shape(cores=2, cases=1) == ClusterShape(0, 1, 2)  # one case: in this process
    assert local_shape(cores=16, gpus=2) == ClusterShape(2, 1, 1)  # one worker per GPU
    assert local_shape(cores=4, workers=0) == ClusterShape(0, 1, 4)
    assert local_shape(cores=8, workers=2, threads_per_worker=2) == ClusterShape(2, 2, 2)
    assert local_shape(cores=8, cases=3) == ClusterShape(3, 1, 2)  # never more workers than cases
    monkeypatch.setattr(cohort_cluster, "physical_memory", lambda: 4 << 30)
    assert local_shape(cores=16) == ClusterShape(2, 1, 8)  # 2 GB a worker: the memory holds two
