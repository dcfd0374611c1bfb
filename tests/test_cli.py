"""The `brainseg` command: info, evaluate, predict, train argument mapping, and its error contract.

Most tests call `cli.main` in-process (fast); the bad-input corpus runs the real entry point
(`python -m brainseg_gui`) in subprocesses, all at once, to prove what a user sees: exit status 2,
exactly one line on stderr, no traceback, nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg_gui import __version__, cli
from brainseg_gui.cli import study as cli_study
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.core.lesion_metrics import lesion_wise
from brainseg_gui.core.metrics import evaluate_regions
from tests.cli_support import one_error_line, run

REPO = Path(__file__).resolve().parents[1]
TINY = (40, 48, 36)




def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    image = nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0]) if affine is None else affine)
    nib.save(image, str(path))
    return path


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from brainseg_gui.core.phantom import write_phantom_case

    return write_phantom_case(tmp_path_factory.mktemp("phantom"), seed=3, shape=TINY)


# ----------------------------------------------------------------------------------- version, help, gui


def test_version_names_app_and_model(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"brainseg {__version__}"
    assert lines[1].startswith("model: ") and len(lines[1]) > len("model: ")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("info", "evaluate", "predict", "train", "gui"):
        assert command in out
    assert "not a medical device" in out


def test_gui_without_display_is_one_clear_line(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    status, out, err = run(capsys)
    assert status == 2 and out == ""
    assert "no display" in one_error_line(err)


def test_gui_with_missing_study_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, tmp_path / "nowhere")
    assert status == 2
    assert str(tmp_path / "nowhere") in one_error_line(err)


def test_default_command_routes_a_study_to_the_viewer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[object] = []
    monkeypatch.setattr(cli_study, "_run_gui", lambda args: seen.append(args.study) or 0)
    assert cli.main([str(tmp_path)]) == 0
    assert cli.main([]) == 0
    assert seen == [tmp_path, None]
    flags: list[bool] = []
    monkeypatch.setattr(cli_study, "_run_gui", lambda args: flags.append(args.no_welcome) or 0)
    assert cli.main(["--no-welcome"]) == 0  # an option of the viewer alone: still the viewer
    assert cli.main(["-v", "--no-welcome", str(tmp_path)]) == 0
    assert cli.main([str(tmp_path)]) == 0
    assert flags == [True, True, False]


def test_the_viewer_gets_the_study_already_being_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`brainseg STUDY` starts reading STUDY before Qt's imports (app/preload.py); the viewer is handed it."""
    pytest.importorskip("PySide6")
    import brainseg_gui.ui.app as ui_app

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(cli_study, "_display_problem", lambda: None)
    monkeypatch.setattr(ui_app, "run_app", lambda study, **kwargs: seen.append({"study": study, **kwargs}) or 0)
    assert cli.main([str(tmp_path), "--no-welcome"]) == 0
    assert cli.main(["--no-welcome"]) == 0
    (with_study, demo) = seen
    assert with_study["study"] == tmp_path and with_study["preload"].path == tmp_path
    assert with_study["preload"]._done.wait(30)  # (its thread ends before tmp_path is cleaned up)
    assert demo["study"] is None and demo["preload"] is None


def test_unexpected_exception_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_study, "_run_info", broken)
    status, _, err = run(capsys, "info", "--demo")
    assert status == 1
    line = one_error_line(err)
    assert "RuntimeError" in line and "boom" in line and "-v" in line
    status, _, err = run(capsys, "-v", "info", "--demo")
    assert status == 1 and "Traceback" in err  # developers get the details


def test_ctrl_c_exits_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_study, "_run_info", interrupted)
    status, _, err = run(capsys, "info", "--demo")
    assert status == 130
    assert one_error_line(err) == "brainseg: error: interrupted"


# ------------------------------------------------------------------------------------------------ info


def test_info_on_a_real_case_text_and_json(capsys: pytest.CaptureFixture[str], real_case: Path) -> None:
    status, text, _ = run(capsys, "info", real_case)
    assert status == 0
    assert "BraTS2021_00003" in text
    assert "240 x 240 x 155 voxels, 1 x 1 x 1 mm, orientation LPS" in text
    assert "BraTS2021_00003_t1ce.nii.gz (int16 on disk)" in text
    assert "0: 8828761, 1: 17214, 2: 57773, 4: 24252" in text
    assert "WT 99.24 mL" in text

    status, out, _ = run(capsys, "info", real_case, "--json")
    assert status == 0
    report = json.loads(out)
    assert report["case_id"] == "BraTS2021_00003"
    assert report["layout"] == "brats"
    assert report["shape"] == [240, 240, 155]
    assert report["spacing_mm"] == [1.0, 1.0, 1.0]
    assert report["orientation"] == "LPS"
    assert list(report["sequences"]) == ["t1", "t1ce", "t2", "flair"]
    for name, sequence in report["sequences"].items():
        assert sequence["file"].endswith(f"BraTS2021_00003_{name}.nii.gz")
        assert sequence["dtype_on_disk"] == "int16"
        assert sequence["min"] == 0.0 and sequence["max"] > 1000
    assert report["sequences"]["t1ce"]["max"] == 11451.0
    assert report["missing"] == []
    labels = report["labels"]
    assert labels["convention"] == "brats" and labels["dtype_on_disk"] == "uint8"
    assert labels["voxel_counts"] == {"0": 8828761, "1": 17214, "2": 57773, "4": 24252}
    assert labels["region_volumes_ml"] == pytest.approx({"WT": 99.239, "TC": 41.466, "ET": 24.252})
    assert report["warnings"] == []


def test_info_on_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from brainseg_gui.core import phantom

    status, out, _ = run(capsys, "info", "--demo", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["case_id"] == phantom.DEMO_CASE_ID
    assert report["shape"] == list(phantom.DEMO_SHAPE)
    assert report["labels"]["convention"] == "brats"
    counts = report["labels"]["voxel_counts"]
    assert set(counts) == {"0", "1", "2", "4"} and sum(counts.values()) == int(np.prod(phantom.DEMO_SHAPE))
    assert report["labels"]["region_volumes_ml"]["WT"] == pytest.approx(
        (counts["1"] + counts["2"] + counts["4"]) / 1000)
    assert any("synthetic" in warning for warning in report["warnings"])
    assert all(sequence["file"] is None for sequence in report["sequences"].values())


def test_info_on_a_written_phantom_case(capsys: pytest.CaptureFixture[str], phantom_case: Path) -> None:
    status, out, _ = run(capsys, "info", phantom_case / f"{phantom_case.name}_flair.nii.gz", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["case_id"] == phantom_case.name
    assert report["layout"] == "brats"
    assert report["shape"] == list(TINY)
    assert [s["dtype_on_disk"] for s in report["sequences"].values()] == ["int16"] * 4
    seg = np.asarray(nib.load(str(phantom_case / f"{phantom_case.name}_seg.nii.gz")).dataobj)
    values, counts = np.unique(seg, return_counts=True)
    assert report["labels"]["voxel_counts"] == {str(v): int(c) for v, c in zip(values, counts)}
    assert set(report["labels"]["voxel_counts"]) == {"0", "1", "2", "4"}


def test_info_needs_a_path_or_demo(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "info")
    assert status == 2
    assert "--demo" in one_error_line(err)


# -------------------------------------------------------------------------------------------- evaluate


def test_evaluate_a_real_seg_against_itself(capsys: pytest.CaptureFixture[str], real_case: Path) -> None:
    seg = real_case / "BraTS2021_00003_seg.nii.gz"
    status, out, _ = run(capsys, "evaluate", seg, seg, "--json")
    assert status == 0
    report = json.loads(out)
    assert list(report["regions"]) == ["WT", "TC", "ET"]
    for metrics in report["regions"].values():
        assert metrics["dice"] == 1.0 and metrics["iou"] == 1.0 and metrics["hd95"] == 0.0
        assert metrics["accuracy_in_brain"] is None
    assert report["regions"]["WT"]["volume_truth_ml"] == pytest.approx(99.239)
    lesions = report["lesion_wise"]
    assert (lesions["challenge"], lesions["dilation"], lesions["volume_threshold_mm3"]) == ("BraTS-GLI", 3, 50.0)
    assert list(lesions["regions"]) == ["WT", "TC", "ET"]
    for m in lesions["regions"].values():
        assert (m["dice"], m["hd95"], m["fp_lesions"], m["fn_lesions"]) == (1.0, 0.0, 0, 0)
        assert m["tp_lesions"] == m["gt_lesions"] >= 1

    status, text, _ = run(capsys, "evaluate", seg, seg)
    assert status == 0
    wt_row = next(line for line in text.splitlines() if line.startswith("WT "))
    assert wt_row.split()[1] == "1.0000"
    lesion_part = text[text.index("lesion-wise (BraTS-GLI"):]
    assert "LW Dice" in lesion_part and "LW HD95 mm" in lesion_part
    lw_row = next(line for line in lesion_part.splitlines() if line.startswith("WT "))
    assert lw_row.split()[1:3] == ["1.0000", "0.00"]


def test_evaluate_a_perturbed_copy_matches_core_metrics(capsys: pytest.CaptureFixture[str], real_case: Path,
                                                         tmp_path: Path) -> None:
    seg_path = real_case / "BraTS2021_00003_seg.nii.gz"
    seg = nib.load(str(seg_path))
    truth = np.asarray(seg.dataobj)
    pred = np.roll(truth, 3, axis=0)
    pred[(pred == 4) & (np.arange(pred.shape[2]) % 7 == 0)[None, None, :]] = 1  # ET slices -> NCR
    pred_path = tmp_path / "pred.nii.gz"
    nib.save(nib.Nifti1Image(pred.astype(np.uint8), seg.affine, seg.header), str(pred_path))

    status, out, _ = run(capsys, "evaluate", pred_path, seg_path, "--json")
    assert status == 0
    report = json.loads(out)
    spacing = seg.header.get_zooms()[:3]
    expected = evaluate_regions(to_regions(pred, LabelConvention.BRATS), to_regions(truth, LabelConvention.BRATS),
                                spacing)
    for region, metrics in expected.items():
        assert report["regions"][region] == metrics.as_dict()  # the same floats, at full precision
    assert 0.5 < report["regions"]["WT"]["dice"] < 1.0
    assert report["regions"]["ET"]["hd95"] > 0
    expected_lesions = lesion_wise(to_regions(pred, LabelConvention.BRATS), to_regions(truth, LabelConvention.BRATS),
                                   spacing)
    assert report["lesion_wise"]["regions"] == {r: m.as_dict() for r, m in expected_lesions.items()}
    assert 0.0 < report["lesion_wise"]["regions"]["WT"]["dice"] < 1.0


def test_evaluate_with_brain_reports_accuracy_in_brain(capsys: pytest.CaptureFixture[str], phantom_case: Path,
                                                       tmp_path: Path) -> None:
    seg_path = phantom_case / f"{phantom_case.name}_seg.nii.gz"
    seg = nib.load(str(seg_path))
    truth = np.asarray(seg.dataobj)
    pred = np.roll(truth, 2, axis=1)
    pred_path = tmp_path / "pred.nii.gz"
    nib.save(nib.Nifti1Image(pred, seg.affine, seg.header), str(pred_path))
    status, out, _ = run(capsys, "evaluate", pred_path, seg_path, "--brain", phantom_case, "--json")
    assert status == 0
    report = json.loads(out)
    brain = np.any([np.asarray(nib.load(str(p)).dataobj) != 0 for p in phantom_case.glob("*_[tf]*.nii.gz")], axis=0)
    expected = evaluate_regions(to_regions(pred, LabelConvention.BRATS), to_regions(truth, LabelConvention.BRATS),
                                seg.header.get_zooms()[:3], brain=brain)
    for region, metrics in expected.items():
        assert report["regions"][region] == metrics.as_dict()
    assert 0.5 < report["regions"]["WT"]["accuracy_in_brain"] < report["regions"]["WT"]["accuracy"] < 1.0
    status, text, _ = run(capsys, "evaluate", pred_path, seg_path, "--brain", phantom_case)
    assert status == 0 and "Acc(brain)" in text


def test_evaluate_takes_conventions_and_converts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The same tissues in BraTS and MSD values score perfectly against each other."""
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[3:9, 3:9, 3:9] = 2  # ED
    labels[4:8, 4:8, 4:8] = 1  # NCR
    labels[5:7, 5:7, 5:7] = 4  # ET
    msd = np.choose(labels, [0, 2, 1, 0, 3]).astype(np.uint8)  # BraTS 1/2/4 -> MSD 2/1/3
    brats_path = save_nifti(tmp_path / "brats.nii.gz", labels)
    msd_path = save_nifti(tmp_path / "msd.nii.gz", msd)
    status, out, _ = run(capsys, "evaluate", msd_path, brats_path, "--pred-labels", "msd", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["prediction"]["convention"] == "msd"
    assert [report["regions"][r]["dice"] for r in ("WT", "TC", "ET")] == [1.0, 1.0, 1.0]
    status, out, _ = run(capsys, "evaluate", msd_path, brats_path, "--pred-labels", "brats23", "--json")
    assert status == 0  # read as BraTS 2023, MSD's 1 (edema) is taken as necrosis: TC differs
    assert json.loads(out)["regions"]["TC"]["dice"] < 1.0


def test_evaluate_says_how_a_binary_mask_was_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[3:9, 3:9, 3:9] = 2
    labels[5:7, 5:7, 5:7] = 4
    truth = save_nifti(tmp_path / "truth.nii.gz", labels)
    binary = save_nifti(tmp_path / "binary.nii.gz", (labels > 0).astype(np.uint8))
    status, out, err = run(capsys, "evaluate", binary, truth, "--json")
    assert status == 0
    assert "brainseg: note: PRED" in err and "holds only the values [0, 1]" in err and "necrotic core" in err
    report = json.loads(out)
    assert report["notes"] and report["regions"]["WT"]["dice"] == 1.0
    status, _, err = run(capsys, "evaluate", binary, truth, "--pred-labels", "brats")
    assert status == 0 and "note" not in err  # a convention given is not second-guessed


# --------------------------------------------------------------------------------------------- predict


def test_predict_one_case(capsys: pytest.CaptureFixture[str], phantom_case: Path, tiny_model: Path,
                          tmp_path: Path) -> None:
    output = tmp_path / "pred.nii.gz"
    status, out, err = run(capsys, "predict", phantom_case, "-o", output, "--model", tiny_model,
                           "--device", "cpu", "--labels", "msd", "--save-probabilities")
    assert status == 0, err
    assert "device: CPU" in out and phantom_case.name in out
    written = nib.load(str(output))
    source = nib.load(str(phantom_case / f"{phantom_case.name}_flair.nii.gz"))
    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1, 2, 3}
    assert nib.load(str(tmp_path / "pred_prob.nii.gz")).shape == (*source.shape, 3)


def test_predict_a_folder_of_cases(capsys: pytest.CaptureFixture[str], tiny_model: Path, tmp_path: Path) -> None:
    from brainseg_gui.core.phantom import write_phantom_case

    cases = [write_phantom_case(tmp_path / "cases", seed=seed, shape=TINY).name for seed in (5, 6)]
    status, out, err = run(capsys, "predict", tmp_path / "cases", "-o", tmp_path / "out", "--model", tiny_model,
                           "--device", "cpu")
    assert status == 0, err
    for case in cases:
        assert (tmp_path / "out" / f"{case}_pred.nii.gz").is_file()
        assert sum(line.startswith(f"{case}:") for line in out.splitlines()) == 1
    assert "running on local Dask cluster" in out and "2 segmented into" in out
    assert (tmp_path / "out" / "cohort.csv").read_text().count("segmented") == 2


def test_predict_refuses_missing_sequences_and_bad_models(capsys: pytest.CaptureFixture[str], phantom_case: Path,
                                                          tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    case = tmp_path / phantom_case.name
    shutil.copytree(phantom_case, case)
    (case / f"{case.name}_t2.nii.gz").unlink()
    (tmp_path / "out").mkdir()
    (tmp_path / "empty_model").mkdir()
    before = _snapshot(tmp_path)
    status, _, err = run(capsys, "predict", case, "-o", tmp_path / "out" / "p.nii.gz", "--model", tiny_model,
                         "--device", "cpu")
    assert status == 2 and "t2" in one_error_line(err) and "--allow-missing" in err
    status, _, err = run(capsys, "predict", phantom_case, "-o", tmp_path / "out" / "p.nii.gz",
                         "--model", tmp_path / "empty_model", "--device", "cpu")
    assert status == 2
    one_error_line(err)
    assert _snapshot(tmp_path) == before

    status, out, err = run(capsys, "predict", case, "-o", tmp_path / "out" / "p.nii.gz", "--model", tiny_model,
                           "--device", "cpu", "--allow-missing")
    assert status == 0, err
    assert "FLAGGED" in out


# ----------------------------------------------------------------------------------------------- train


def test_train_maps_options_onto_train_config(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              phantom_case: Path, tmp_path: Path) -> None:
    training = pytest.importorskip("brainseg_gui.ml.training")
    seen = {}

    def fake_train(config, *, progress, cancel=None, on_epoch=None, output=None):  # type: ignore[no-untyped-def]
        seen["config"] = config
        progress(0.5, "epoch 1/2 step 1/3")
        card = type("Card", (), {"version": "abc123", "validation": {"dice": {"WT": 0.5, "TC": 0.4, "ET": 0.3}}})()
        return type("Result", (), {"card": card, "model_dir": config.out_dir, "history": [1, 2], "best_epoch": 2})()

    monkeypatch.setattr(training, "train", fake_train)
    status, out, _ = run(capsys, "train", phantom_case.parent, "--out", tmp_path / "model", "--epochs", "2",
                         "--steps-per-epoch", "3", "--batch-size", "4", "--lambda", "5", "--no-adversarial",
                         "--device", "cpu", "--folds", "4", "--fold", "1", "--seed", "7", "--resume")
    assert status == 0
    config = seen["config"]
    assert config.data_dirs == [phantom_case.parent] and config.out_dir == tmp_path / "model"
    assert (config.epochs, config.steps_per_epoch, config.batch_size) == (2, 3, 4)
    assert (config.lambda_rec, config.adversarial, config.device) == (5.0, False, "cpu")
    assert (config.folds, config.fold, config.seed, config.resume) == (4, 1, 7, True)
    assert "abc123" in out and "WT 0.500" in out

    status, _, _ = run(capsys, "train", phantom_case.parent, "--out", tmp_path / "m2", "--val", phantom_case)
    assert status == 0
    assert seen["config"].val_cases == [phantom_case.name]
    defaults = training.TrainConfig()
    assert seen["config"].epochs == defaults.epochs and seen["config"].adversarial is True
    assert seen["config"].val_fraction == defaults.val_fraction and seen["config"].cache_dir is None

    status, _, _ = run(capsys, "train", phantom_case.parent, "--out", tmp_path / "m3", "--val-fraction", "0",
                       "--cache", tmp_path / "cache")
    assert status == 0
    assert (seen["config"].val_fraction, seen["config"].cache_dir) == (0.0, tmp_path / "cache")
    status, _, err = run(capsys, "train", phantom_case.parent, "--out", tmp_path / "m4", "--val-fraction", "1")
    assert status == 2 and "fraction" in one_error_line(err)
    status, _, err = run(capsys, "train", phantom_case.parent, "--out", tmp_path / "m4", "--val-fraction", "0.3",
                         "--val", phantom_case)
    assert status == 2 and "--val-fraction" in one_error_line(err)


def test_under_torchrun_only_rank_0_reports(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                            phantom_case: Path, tmp_path: Path) -> None:
    training = pytest.importorskip("brainseg_gui.ml.training")
    calls = []

    def fake_train(config, *, progress=None, cancel=None, on_epoch=None, output=None):  # type: ignore[no-untyped-def]
        calls.append(config.out_dir)
        if progress is not None:
            progress(0.5, "epoch 1/1")
        card = type("Card", (), {"version": "abc123", "validation": {"dice": {"WT": 0.5}}})()
        return type("Result", (), {"card": card, "model_dir": config.out_dir, "history": [1], "best_epoch": 1})()

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, reports in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        status, out, err = run(capsys, "train", phantom_case.parent, "--out", tmp_path / "model")
        assert status == 0
        assert ("abc123" in out and "WT 0.500" in out) is reports
        assert (out + err == "") is not reports
    assert len(calls) == 2  # every rank trains


def test_train_rejects_a_fold_without_folds(capsys: pytest.CaptureFixture[str], phantom_case: Path,
                                            tmp_path: Path) -> None:
    status, _, err = run(capsys, "train", phantom_case.parent, "--out", tmp_path, "--fold", "1")
    assert status == 2
    assert "--folds" in one_error_line(err)


# ------------------------------------------------------------------------------------- bad-input corpus


def _make_corpus(root: Path) -> dict[str, list[str]]:
    """Broken inputs on disk, and the command line that must reject each."""
    good = np.zeros((10, 12, 8), np.uint8)
    good[3:6, 4:8, 2:5] = 2
    good[4:5, 5:7, 3:4] = 4
    save_nifti(root / "good.nii.gz", good)
    bad_values = good.copy()
    bad_values[0, 0, 0] = 7
    save_nifti(root / "bad_values.nii.gz", bad_values)
    save_nifti(root / "other_shape.nii.gz", np.zeros((10, 12, 9), np.uint8))
    shifted = np.diag([-1.0, -1.0, 1.0, 1.0])
    shifted[:3, 3] = (5.0, 0.0, 0.0)
    save_nifti(root / "shifted.nii.gz", good, shifted)
    save_nifti(root / "nan.nii.gz", np.where(good > 0, np.nan, 0).astype(np.float32))
    (root / "zero_t1.nii.gz").write_bytes(b"")
    (root / "text.nii.gz").write_text("this is not an image\n")
    whole = save_nifti(root / "whole.nii.gz", np.arange(20 * 20 * 20, dtype=np.int16).reshape(20, 20, 20))
    data = whole.read_bytes()
    (root / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    whole.unlink()
    save_nifti(root / "flat2d.nii.gz", np.ones((20, 20), np.int16))
    save_nifti(root / "five_d.nii.gz", np.ones((4, 4, 4, 1, 2), np.int16))
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "notes.txt").write_text("no images here\n")
    (root / "junk" / "scan").write_bytes(b"\x00" * 300)  # no suffix, not DICOM either
    (root / "out").mkdir()
    r = str(root)
    return {
        "missing path": ["info", f"{r}/missing_case"],
        "zero-byte file": ["info", f"{r}/zero_t1.nii.gz"],
        "text named .nii.gz": ["info", f"{r}/text.nii.gz"],
        "truncated .gz": ["info", f"{r}/truncated.nii.gz"],
        "2D image": ["info", f"{r}/flat2d.nii.gz"],
        "5D image": ["info", f"{r}/five_d.nii.gz"],
        "unknown label values": ["evaluate", f"{r}/bad_values.nii.gz", f"{r}/good.nii.gz"],
        "NaN label map": ["evaluate", f"{r}/nan.nii.gz", f"{r}/good.nii.gz"],
        "mismatched shapes": ["evaluate", f"{r}/good.nii.gz", f"{r}/other_shape.nii.gz"],
        "mismatched affines": ["evaluate", f"{r}/good.nii.gz", f"{r}/shifted.nii.gz"],
        "truncated truth": ["evaluate", f"{r}/good.nii.gz", f"{r}/truncated.nii.gz"],
        "empty folder": ["info", f"{r}/empty"],
        "folder of junk": ["info", f"{r}/junk"],
        "label map given as a folder": ["evaluate", f"{r}/junk", f"{r}/good.nii.gz"],
        "predict an empty folder": ["predict", f"{r}/empty", "-o", f"{r}/out"],
        "predict a text file": ["predict", f"{r}/text.nii.gz", "-o", f"{r}/out/pred.nii.gz"],
        "unknown --labels": ["evaluate", f"{r}/good.nii.gz", f"{r}/good.nii.gz", "--pred-labels", "brats2099"],
        "unknown option": ["info", f"{r}/good.nii.gz", "--colour"],
        "empty path": ["info", ""],
        "empty output path": ["predict", f"{r}/good.nii.gz", "-o", ""],
    }


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, _make_corpus(root)


CORPUS = ["missing path", "zero-byte file", "text named .nii.gz", "truncated .gz", "2D image", "5D image",
          "unknown label values", "NaN label map", "mismatched shapes", "mismatched affines", "truncated truth",
          "empty folder", "folder of junk", "label map given as a folder", "predict an empty folder", "predict a text file", "unknown --labels", "unknown option",
          "empty path", "empty output path"]
#: The part of the corpus also run through the real entry point, `python -m brainseg_gui`.
THROUGH_SUBPROCESS = ["missing path", "truncated .gz", "5D image", "unknown label values", "mismatched affines",
                      "predict an empty folder", "unknown --labels"]


@pytest.mark.parametrize("name", CORPUS)
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], corpus: tuple[Path, dict[str, list[str]]], name: str
) -> None:
    root, commands = corpus
    before = _snapshot(root)
    status, out, err = run(capsys, *commands[name])
    assert status == 2, (out, err)
    one_error_line(err)
    assert _snapshot(root) == before


def test_bad_input_messages_name_the_problem(capsys: pytest.CaptureFixture[str],
                                             corpus: tuple[Path, dict[str, list[str]]]) -> None:
    _, commands = corpus
    message = {name: one_error_line(run(capsys, *commands[name])[2]) for name in commands}
    assert "missing_case" in message["missing path"]
    assert "[7]" in message["unknown label values"]
    assert "(10, 12, 8)" in message["mismatched shapes"] or "10x12x8" in message["mismatched shapes"]
    assert "grid" in message["mismatched affines"] and "origin" in message["mismatched affines"]
    assert "brats2099" in message["unknown --labels"]
    assert "--colour" in message["unknown option"]
    assert "no case" in message["predict an empty folder"].lower()
    assert "five_d.nii.gz" in message["5D image"]
    assert "empty path" in message["empty path"] and "empty path" in message["empty output path"]


def test_bad_input_through_the_real_entry_point(corpus: tuple[Path, dict[str, list[str]]]) -> None:
    """Each command line in its own interpreter (all at once): exit 2, one line, no traceback, no writes."""
    root, commands = corpus
    before = _snapshot(root)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "brainseg_gui", *commands[name]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=root, env=env)
        for name in THROUGH_SUBPROCESS
    }
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 2, (name, out, err)
        one_error_line(err)
    assert _snapshot(root) == before
