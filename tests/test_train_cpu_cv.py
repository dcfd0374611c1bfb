"""scripts/train_cpu_cv.sh: the CPU cross-validation chain runs end to end and a rerun resumes it."""

from __future__ import annotations

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
    all16 = json.loads((runs / "all16" / "card.json").read_text())
    assert len(all16["training"]["cases"]) == 8 and all16["training"]["validation_cases"] == []

    weights = {path: path.stat().st_mtime_ns for path in runs.rglob("weights.safetensors")}
    again = subprocess.run(["bash", str(SCRIPT), str(runs)], env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    assert again.returncode == 0, again.stderr
    assert {path: path.stat().st_mtime_ns for path in runs.rglob("weights.safetensors")} == weights  # resumed, not redone
    assert (runs / "logs" / "fold0.log").read_text().count("brainseg train --out") == 2

    # A fresh machine: the runs of fold 1 are gone, its figures are in the record (git): not trained again.
    rows = (runs / "cv" / "per_case.csv").read_text().splitlines()
    (tmp_path / "record.csv").write_text("\n".join([rows[0], *(r for r in rows[1:] if r.startswith("1,"))]) + "\n")
    shutil.rmtree(runs / "cv" / "fold1")
    third = subprocess.run(["bash", str(SCRIPT), str(runs)], env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    assert third.returncode == 0, (third.stderr, (runs / "logs" / "crossval.log").read_text())
    assert not (runs / "cv" / "fold1").exists()
    assert "its figures are in" in (runs / "logs" / "fold1.log").read_text()
    assert "8 held-out cases over 4 folds" in (runs / "cv" / "summary.md").read_text()
    merged = (runs / "cv" / "per_case.csv").read_text().splitlines()
    assert [r for r in merged if r.startswith("1,")] == [r for r in rows[1:] if r.startswith("1,")]
