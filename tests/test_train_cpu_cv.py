"""scripts/train_cpu_cv.sh: the CPU cross-validation chain runs end to end and a rerun resumes it."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from brainseg_gui.core.phantom import write_phantom_case

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_cpu_cv.sh"


@pytest.mark.slow
def test_the_chain_trains_every_fold_scores_them_and_trains_the_all_cases_model(tmp_path: Path) -> None:
    if not (REPO / ".venv" / "bin" / "brainseg").exists():
        pytest.skip("the script runs .venv/bin/brainseg: set up with scripts/setup.sh")
    data = tmp_path / "data"
    for index, collection in enumerate(("brats2017", "brats2018", "brats2018", "brats2021") * 2):
        write_phantom_case(data / collection, seed=index, shape=(40, 48, 36), case_id=f"phantom{index}")
    runs = tmp_path / "runs"
    env = {**os.environ, "BRAINSEG_DATA": str(data), "OMP_NUM_THREADS": "1",
           "TRAIN_OPTIONS": "--epochs 1 --steps-per-epoch 1 --batch-size 2",
           "CV_RECORD": str(tmp_path / "record.csv")}  # none yet (the project's own is of the real cases)
    done = subprocess.run(["bash", str(SCRIPT), str(runs)], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    logs = {path.name: path.read_text() for path in (runs / "logs").glob("*.log")}
    assert done.returncode == 0, (done.stderr, logs)
    for fold in range(4):
        card = json.loads((runs / "cv" / f"fold{fold}" / "card.json").read_text())
        assert card["training"]["recipe"]["fold"] == fold and card["training"]["epochs_done"] == 1
    summary = (runs / "cv" / "summary.md").read_text()
    assert "8 held-out cases over 4 folds" in summary
    all16 = json.loads((runs / "all16" / "card.json").read_text())  # the model it would ship: its last epoch
    assert len(all16["training"]["cases"]) == 8 and all16["training"]["validation_cases"] == []
    assert all16["version"] == json.loads((runs / "all16" / "last" / "card.json").read_text())["version"]

    record = (tmp_path / "record.csv").read_text()  # every finished fold is scored and recorded at once
    assert record == (runs / "cv" / "per_case.csv").read_text() and len(record.splitlines()) == 1 + 8 * 3
    # each fold is scored by its last epoch (what the all-16 run delivers), not by its best epoch
    last = {json.loads((runs / "cv" / f"fold{fold}" / "last" / "card.json").read_text())["version"]
            for fold in range(4)}
    assert {row["model_version"] for row in csv.DictReader(io.StringIO(record))} == last
    assert (runs / "logs" / "crossval.log").read_text().count("brainseg crossval") == 5  # 4 folds, the end

    weights = {path: path.stat().st_mtime_ns for path in runs.rglob("weights.safetensors")}
    again = subprocess.run(["bash", str(SCRIPT), str(runs)], env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    assert again.returncode == 0, again.stderr
    assert {path: path.stat().st_mtime_ns for path in runs.rglob("weights.safetensors")} == weights  # resumed, not redone
    assert (runs / "logs" / "fold0.log").read_text().count("brainseg train --out") == 2

    # A fresh machine: the runs of fold 1 are gone, its figures are in the record (git): not trained again.
    shutil.rmtree(runs / "cv" / "fold1")
    third = subprocess.run(["bash", str(SCRIPT), str(runs)], env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    assert third.returncode == 0, (third.stderr, (runs / "logs" / "crossval.log").read_text())
    assert not (runs / "cv" / "fold1").exists()
    assert "its figures are in" in (runs / "logs" / "fold1.log").read_text()
    assert "8 held-out cases over 4 folds" in (runs / "cv" / "summary.md").read_text()
    assert (tmp_path / "record.csv").read_text() == record  # the recorded fold 1 kept, the others scored again

    # A record of another split (its folds swapped) stops the chain before any training.
    lines = record.splitlines(keepends=True)
    swapped = [lines[0], *(("1" if row[0] == "0" else "0" if row[0] == "1" else row[0]) + row[1:] for row in lines[1:])]
    (tmp_path / "other.csv").write_text("".join(swapped))
    fresh = tmp_path / "fresh"
    refused = subprocess.run(["bash", str(SCRIPT), str(fresh)], env={**env, "CV_RECORD": str(tmp_path / "other.csv")},
                             capture_output=True, text=True, timeout=900, check=False)
    assert refused.returncode != 0
    assert "holds out" in (fresh / "logs" / "crossval.log").read_text()
    assert not (fresh / "cv" / "fold0").exists() and not (fresh / "all16").exists()
