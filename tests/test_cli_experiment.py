"""`brainseg experiment` on tiny phantoms: two models, two epochs, tiny crops; tables and figure parse."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from brainseg_gui import cli
from brainseg_gui.core.phantom import write_phantom_case

pytestmark = pytest.mark.slow

ARGS = ["--models", "fcn,ours", "--adversarial", "both", "--test-fraction", "0.5", "--epochs", "2",
        "--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "32", "--resolution", "4",
        "--width-scale", "0.125", "--device", "cpu", "--seed", "1"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    data = tmp_path_factory.mktemp("phantoms")
    for seed in (1, 2, 3, 4):
        write_phantom_case(data, seed=seed, shape=(48, 48, 40))
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        status = cli.main(["experiment", str(data), "--out", str(out), *ARGS])
    return data, out, status


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_it_writes_every_report(experiment) -> None:
    _, out, status = experiment
    assert status == 0
    for name in ("table1.csv", "table1.md", "table2.csv", "table2.md", "figure3.png", "ablation.csv",
                 "ablation.md", "per_case.csv", "curves.csv", "curves.png", "config.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    picture = matplotlib.image.imread(out / "figure3.png")
    assert picture.shape[0] > 200 and picture.shape[1] > 400


def test_tables_are_the_means_of_the_per_case_metrics(experiment) -> None:
    _, out, _ = experiment
    per_case = _rows(out / "per_case.csv")
    assert {(r["model"], r["adversarial"]) for r in per_case} == {("fcn", "off"), ("fcn", "on"),
                                                                  ("ours", "off"), ("ours", "on")}
    assert len({r["case_id"] for r in per_case}) == 2
    for table, metrics in (("table1.csv", {"accuracy", "accuracy_in_brain", "recall"}),
                           ("table2.csv", {"iou", "dice"})):
        rows = _rows(out / table)
        assert len(rows) == 4 * len(metrics) and {r["metric"] for r in rows} == metrics
        for row in rows:
            cases = [r for r in per_case if (r["model"], r["adversarial"]) == (row["model"], row["adversarial"])]
            for region in ("WT", "TC", "ET"):
                expected = statistics.fmean(float(r[row["metric"]]) for r in cases if r["region"] == region)
                assert float(row[region]) == pytest.approx(expected, abs=1e-5)
                assert 0.0 <= float(row[region]) <= 1.0
            means = [float(row[region]) for region in ("WT", "TC", "ET")]
            assert float(row["mean"]) == pytest.approx(statistics.fmean(means), abs=1e-5)
    assert "| FCN-8s | on |" in (out / "table2.md").read_text()


def test_the_ablation_pairs_each_case_with_and_without_the_adversarial_term(experiment) -> None:
    _, out, _ = experiment
    per_case = _rows(out / "per_case.csv")
    rows = [r for r in _rows(out / "ablation.csv") if r["metric"] == "dice" and r["region"] == "WT"]
    assert {r["model"] for r in rows} == {"fcn", "ours"}
    for row in rows:
        on = {r["case_id"]: float(r["dice"]) for r in per_case
              if (r["model"], r["adversarial"], r["region"]) == (row["model"], "on", "WT")}
        off = {r["case_id"]: float(r["dice"]) for r in per_case
               if (r["model"], r["adversarial"], r["region"]) == (row["model"], "off", "WT")}
        assert int(row["pairs"]) == 2
        assert float(row["difference"]) == pytest.approx(statistics.fmean(on[c] - off[c] for c in on), abs=1e-5)


def test_config_records_what_a_rerun_needs(experiment) -> None:
    data, out, _ = experiment
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"]["models"] == ["fcn", "ours"] and config["experiment"]["epochs"] == 2
    assert config["case_ids"] == sorted(p.name for p in data.iterdir())
    assert len(config["runs"]) == 4
    for run in config["runs"]:
        assert len(run["model_version"]) == 12 and run["parameters"] > 0
        assert not set(run["train_cases"]) & set(run["test_cases"]) and len(run["test_cases"]) == 2
    curves = _rows(out / "curves.csv")
    assert sorted({int(r["epoch"]) for r in curves}) == [1, 2] and len(curves) == 8


def test_a_rerun_keeps_finished_runs_and_redoes_a_lost_evaluation(experiment, capsys) -> None:
    data, out, _ = experiment
    before = json.loads((out / "config.json").read_text())["runs"]
    (out / "runs" / "ours-adv" / "fold0" / "evaluation.json").unlink()
    assert cli.main(["experiment", str(data), "--out", str(out), *ARGS]) == 0
    after = json.loads((out / "config.json").read_text())["runs"]
    assert [r["model_version"] for r in after] == [r["model_version"] for r in before]
    assert "| Ours | on |" in capsys.readouterr().out


def test_a_different_recipe_in_the_same_folder_is_refused(experiment, capsys) -> None:
    data, out, _ = experiment
    changed = [*ARGS, "--lr", "0.01"]
    assert cli.main(["experiment", str(data), "--out", str(out), *changed]) == 2
    assert "another recipe" in capsys.readouterr().err


def test_usage_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["experiment", str(tmp_path), "--out", str(tmp_path / "o"), "--models", "fcn,vgg"]) == 2
    assert "unknown models ['vgg']" in capsys.readouterr().err
    assert cli.main(["experiment", str(tmp_path), "--out", str(tmp_path / "o"), "--folds", "1"]) == 2
    assert cli.main(["experiment", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2


def test_list_models_prints_parameter_counts(capsys) -> None:
    assert cli.main(["experiment", "--list-models", "--width-scale", "1"]) == 0
    text = capsys.readouterr().out
    assert "1,402,889" in text and "fcn8s" in text and "deeplabv2" in text


def test_saved_predictions_reproduce_the_per_case_dice(experiment) -> None:
    import numpy as np

    from brainseg_gui.core.io import load_label_map, load_study
    from brainseg_gui.core.labels import LabelConvention, to_regions
    from brainseg_gui.core.metrics import evaluate_regions

    data, out, _ = experiment
    rows = [r for r in _rows(out / "per_case.csv") if (r["model"], r["adversarial"]) == ("fcn", "on")]
    for case_id in {r["case_id"] for r in rows}:
        study = load_study(data / case_id)
        predicted, _, _ = load_label_map(out / "runs" / "fcn-adv" / "fold0" / "predictions" / f"{case_id}.nii.gz",
                                         convention=LabelConvention.BRATS, reference=study.grid)
        scores = evaluate_regions(to_regions(np.asarray(predicted), LabelConvention.BRATS),
                                  to_regions(study.labels, study.label_convention), study.grid.spacing)
        for row in rows:
            if row["case_id"] == case_id:
                assert scores[row["region"]].dice == pytest.approx(float(row["dice"]), abs=1e-6)  # csv keeps 6 decimals


def test_the_cli_mirrors_of_the_experiment_defaults_agree() -> None:
    from brainseg_gui.cli import experiment as command
    from brainseg_gui.ml.experiment import LR_SCHEDULES, MODELS, ExperimentConfig

    defaults = ExperimentConfig()
    assert command.MODEL_NAMES == tuple(MODELS) and command.LR_SCHEDULES == LR_SCHEDULES
    assert (command.DEFAULT_EPOCHS, command.DEFAULT_STEPS_PER_EPOCH) == (defaults.epochs, defaults.steps_per_epoch)
