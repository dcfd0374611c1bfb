"""Cross-validation on tiny phantoms: every case held out once, reports written, partial folds scored."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
import statistics
from pathlib import Path

import pytest

from brainseg_gui import cli
from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml.crossval import read_per_case, run_crossval, summarise, summary_markdown
from brainseg_gui.ml.training import TrainConfig


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _template(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        data_dirs=[data], out_dir=out, epochs=1, steps_per_epoch=2, batch_size=2, patch_size=16,
        resolution_mm=2.0, network={"widths": [4, 8]}, discriminator={"widths": [4, 8]}, device="cpu", seed=3,
        et_min_voxels=0,
    )


@pytest.fixture(scope="module")
def crossval_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    data = tmp_path_factory.mktemp("phantoms")
    for seed in (1, 2, 3, 4):
        write_phantom_case(data, seed=seed, shape=(40, 40, 32))
    out = tmp_path_factory.mktemp("cv")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        evaluations = run_crossval(_template(data, out), 2, out)
    return data, out, evaluations


def test_every_case_is_held_out_exactly_once(crossval_run) -> None:
    data, out, evaluations = crossval_run
    assert sorted(e.case_id for e in evaluations) == sorted(p.name for p in data.iterdir())
    assert sorted({e.fold for e in evaluations}) == [0, 1]
    for fold in (0, 1):
        card = json.loads((out / f"fold{fold}" / "card.json").read_text())
        held_out = {e.case_id for e in evaluations if e.fold == fold}
        assert set(card["training"]["validation_cases"]) == held_out
        assert not held_out & set(card["training"]["cases"])
    for e in evaluations:
        assert 0.0 <= e.metrics["WT"].dice <= 1.0
        assert list(e.lesion_wise) == ["WT", "TC", "ET"]
        wt = e.lesion_wise["WT"]
        assert 0.0 <= wt.dice <= 1.0 and 0.0 <= wt.hd95 <= 374.0
        assert wt.gt_lesions == wt.tp_lesions + wt.fn_lesions


def test_reports_agree_with_the_evaluations(crossval_run) -> None:
    _, out, evaluations = crossval_run
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert len(rows) == 3 * len(evaluations)
    summary = json.loads((out / "summary.json").read_text())
    expected = summarise(evaluations)["WT"]["dice"]["mean"]
    assert summary["regions"]["WT"]["dice"]["mean"] == pytest.approx(expected)
    assert "| WT |" in (out / "summary.md").read_text()

    by_case = {(e.case_id, region): e.lesion_wise[region] for e in evaluations for region in ("WT", "TC", "ET")}
    for row in rows:
        lesions = by_case[row["case_id"], row["region"]]
        assert float(row["lesion_dice"]) == pytest.approx(lesions.dice)
        assert float(row["lesion_hd95"]) == pytest.approx(lesions.hd95)
        assert int(row["fp_lesions"]) == lesions.fp_lesions and int(row["gt_lesions"]) == lesions.gt_lesions
    et_lesion_dice = [e.lesion_wise["ET"].dice for e in evaluations]
    stats = summary["regions"]["ET"]["lesion_dice"]
    assert stats["mean"] == pytest.approx(statistics.fmean(et_lesion_dice))
    assert stats["sd"] == pytest.approx(statistics.stdev(et_lesion_dice))
    assert "lesion_hd95" in summary["regions"]["TC"]
    header = (out / "summary.md").read_text().splitlines()[0]
    assert "| dice | hd95 | lesion_dice | lesion_hd95 |" in header


def test_summaries_skip_lesion_wise_metrics_when_not_computed(crossval_run) -> None:
    _, _, evaluations = crossval_run
    bare = [dataclasses.replace(e, lesion_wise={}) for e in evaluations]
    summary = summarise(bare)["WT"]
    assert "dice" in summary and "lesion_dice" not in summary
    assert "n/a" in summary_markdown(bare)


def test_evaluate_only_scores_the_trained_folds_and_names_the_missing(crossval_run, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    data, out, evaluations = crossval_run
    partial = tmp_path / "partial"
    shutil.copytree(out / "fold0", partial / "fold0")
    with caplog.at_level(logging.WARNING):
        again = run_crossval(_template(data, partial), 2, partial, train_missing=False)
    assert {e.fold for e in again} == {0}
    fold0 = {e.case_id: e.metrics["WT"].dice for e in evaluations if e.fold == 0}
    assert {e.case_id: e.metrics["WT"].dice for e in again} == pytest.approx(fold0)
    assert "folds 1 have no trained model" in caplog.text
    assert not (partial / "fold1").exists()
    with pytest.raises(ModelError, match="no trained fold model"):
        run_crossval(_template(data, tmp_path / "empty"), 2, tmp_path / "empty", train_missing=False)


def test_cli_evaluate_only_prints_the_table(crossval_run, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, out, _ = crossval_run
    copy = tmp_path / "copy"
    shutil.copytree(out / "fold0", copy / "fold0")
    shutil.copytree(out / "fold1", copy / "fold1")
    # folds copied by hand carry no marker: --force lets crossval read them and write its reports beside
    assert cli.main(["crossval", str(data), "--out", str(copy), "--folds", "2", "--evaluate-only",
                     "--device", "cpu", "--force"]) == 0
    printed = capsys.readouterr().out
    assert "| ET |" in printed and "4 held-out cases over 2 folds" in printed
    assert cli.main(["crossval", str(data), "--out", str(tmp_path / "none"), "--folds", "2",
                     "--evaluate-only"]) == 2
    assert "no trained fold model" in capsys.readouterr().err


def test_per_case_csv_reads_back_as_the_evaluations(crossval_run) -> None:
    _, out, evaluations = crossval_run
    again = read_per_case(out / "per_case.csv")
    assert [(e.fold, e.case_id, e.model_version) for e in again] == [
        (e.fold, e.case_id, e.model_version) for e in evaluations]
    for before, after in zip(evaluations, again, strict=True):
        assert after.metrics == before.metrics
        assert after.lesion_wise == before.lesion_wise
    assert summarise(again) == summarise(evaluations)


def test_folds_of_another_session_complete_the_table(crossval_run, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Fold 1 trained here, fold 0 only as figures in an earlier run's per_case.csv: the table covers both."""
    data, out, evaluations = crossval_run
    earlier = tmp_path / "earlier.csv"
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    with earlier.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if row["fold"] == "0")
    here = tmp_path / "here"
    shutil.copytree(out / "fold1", here / "fold1")
    merged = run_crossval(_template(data, here), 2, here, train_missing=False, earlier=read_per_case(earlier))
    assert sorted((e.fold, e.case_id) for e in merged) == sorted((e.fold, e.case_id) for e in evaluations)
    assert summarise(merged)["WT"]["dice"] == pytest.approx(summarise(evaluations)["WT"]["dice"])
    assert not (here / "fold0").exists()
    # through the command line too (a folder of its own: the run above wrote reports unclaimed)
    here = tmp_path / "cli"
    shutil.copytree(out / "fold1", here / "fold1")
    assert cli.main(["crossval", str(data), "--out", str(here), "--folds", "2", "--evaluate-only",
                     "--earlier", str(earlier), "--device", "cpu", "--force", "--seed", "3"]) == 0
    assert "4 held-out cases over 2 folds" in capsys.readouterr().out
    # the figures were of the split of seed 3: under another seed fold 0 holds out other cases
    assert cli.main(["crossval", str(data), "--out", str(here), "--folds", "2", "--evaluate-only",
                     "--earlier", str(earlier), "--device", "cpu", "--force", "--seed", "0"]) == 2
    assert "holds out" in capsys.readouterr().err


def test_earlier_figures_of_another_split_are_refused(crossval_run, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    data, out, _ = crossval_run
    recorded = read_per_case(out / "per_case.csv")
    swapped = [dataclasses.replace(e, fold=1 - e.fold) for e in recorded if e.fold == 0]
    with pytest.raises(StudyLoadError, match="holds out"):
        run_crossval(_template(data, tmp_path / "x"), 2, tmp_path / "x", train_missing=False, earlier=swapped)
    good = (out / "per_case.csv").read_text()
    header, first, *rest = good.splitlines(keepends=True)
    (tmp_path / "bom.csv").write_text("\ufeff" + good)  # as a spreadsheet saves it
    assert [e.case_id for e in read_per_case(tmp_path / "bom.csv")] == [e.case_id for e in recorded]
    columns = header.strip().split(",")
    no_tc_lesions = [",".join("" if c in ("lesion_dice", "lesion_hd95") and "TC" in row.split(",")[3] else v
                              for c, v in zip(columns, row.strip().split(","), strict=True)) + "\n"
                     for row in [first, *rest]]
    broken = {
        "empty": "",
        "other columns": "fold,case_id\n0,a\n",
        "not a table": "not,a,table\n1,2,3\n",
        "a repeated row": header + first + first + "".join(rest),
        "a word for a number": header + first.replace(",0.", ",zero.", 1) + "".join(rest),
        "lesion-wise figures of some regions": header + "".join(no_tc_lesions),
        "a field of 200 KB": header + first.rstrip("\n") + "x" * 200_000 + "\n",
        "a fold beyond --folds": header + "".join("7" + row[1:] for row in [first, *rest]),
    }
    for kind, text in broken.items():
        (tmp_path / "bad.csv").write_text(text)
        assert cli.main(["crossval", str(data), "--out", str(tmp_path / "y"), "--folds", "2", "--evaluate-only",
                         "--earlier", str(tmp_path / "bad.csv")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("brainseg: error: ") and len(err.strip().splitlines()) == 1, (kind, err)
        assert "bad.csv" in err or "--folds" in err, (kind, err)
        assert not (tmp_path / "y").exists(), kind


def test_folds_are_scored_by_the_weights_asked_for(crossval_run, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """The last epoch or the moving average (what an all-cases run delivers) instead of the epoch picked
    on the held-out cases themselves, when asked; a fold without them is one error line."""
    data, out, _ = crossval_run
    averaged = tmp_path / "averaged"
    template = dataclasses.replace(_template(data, averaged), ema_decay=0.99)
    for weights, folder in (("ema", "ema"), ("last", "last")):
        evaluations = run_crossval(template, 2, averaged, weights=weights)
        for fold in (0, 1):
            card = json.loads((averaged / f"fold{fold}" / folder / "card.json").read_text())
            assert card["training"]["weights"] == weights
            assert {e.model_version for e in evaluations if e.fold == fold} == {card["version"]}
    plain = tmp_path / "plain"  # trained without --ema, and (as folds trained before it was kept) no last/
    shutil.copytree(out / "fold0", plain / "fold0", ignore=shutil.ignore_patterns("last"))
    for weights, why in (("ema", "was trained without --ema"), ("last", "resuming the run")):
        assert cli.main(["crossval", str(data), "--out", str(plain), "--folds", "2", "--evaluate-only",
                         "--weights", weights, "--device", "cpu", "--force"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("brainseg: error: ") and why in err and len(err.strip().splitlines()) == 1, err
    assert cli.main(["crossval", str(data), "--out", str(out), "--folds", "2", "--ema", "1"]) == 2
    assert "expected a decay between 0 and 1" in capsys.readouterr().err
