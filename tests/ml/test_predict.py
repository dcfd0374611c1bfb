"""predict_case: files on the input grid, sidecars, atomic writes, protected inputs,
a batch that survives a broken case. Cases are the blob study (whose tumour the oracle network
finds, see predict_oracle.py) and phantoms written as BraTS case folders."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from fault_injection import FAULT_POINTS, assert_all_or_nothing
from predict_oracle import TINY_CONFIG, blob_study, oracle_predictor, write_case

from brainseg_gui.core.errors import BrainSegError, Cancelled, GridMismatchError, StudyLoadError
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.ml.checkpoint import ModelCard, save_model
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.predict import PREDICTION_SUFFIX, CaseSummary, predict_case
from brainseg_gui.ml.predictor import Predictor

SHAPE = (40, 48, 36)


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_case(tmp_path_factory.mktemp("cases"), blob_study(SHAPE, case_id="P005"))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return oracle_predictor()


def _folder_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_predict_case_writes_labels_on_the_input_grid(case_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    output = tmp_path / "out.nii.gz"
    summary = predict_case(case_dir, output, predictor=predictor)
    written = nib.load(output)
    flair = nib.load(case_dir / "P005_flair.nii.gz")
    assert written.shape == flair.shape == SHAPE
    assert np.array_equal(written.affine, flair.affine)
    assert np.array_equal(written.get_qform(), flair.affine) and np.array_equal(written.get_sform(), flair.affine)
    labels = np.asarray(written.dataobj)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4} and 4 in labels
    assert written.header["descrip"].tobytes().rstrip(b"\0") == b"BrainSeg oracle"

    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["model_version"] == "oracle" and sidecar["device"].startswith("CPU")
    assert sidecar["tta"] is False and sidecar["flagged"] is False and sidecar["missing_sequences"] == []
    assert sidecar["label_convention"] == "brats" and sidecar["label_values"] == {"NCR": 1, "ED": 2, "ET": 4}
    assert sidecar["inputs"]["flair"] == str(case_dir / "P005_flair.nii.gz")
    assert set(sidecar["seconds"]) >= {"load", "prepare", "network", "postprocess", "total"}
    expected_wt = float((labels > 0).sum()) / 1000.0  # 1 mm voxels
    assert sidecar["volumes_ml"]["WT"] == pytest.approx(expected_wt, abs=1e-3)
    assert summary.volumes_ml["WT"] == pytest.approx(expected_wt)
    assert summary.volumes_ml["ET"] == pytest.approx(float((labels == 4).sum()) / 1000.0)
    assert summary.output == output and summary.ok and summary.case_id == "P005"
    assert _folder_files(tmp_path) == {"out.nii.gz", "out.json"}  # no temporary files left


def test_other_conventions_and_probabilities(case_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    probabilities = tmp_path / "prob.nii.gz"
    predict_case(case_dir / "P005_t1.nii.gz", tmp_path / "p.nii.gz", predictor=predictor, labels="brats23",
                 save_probabilities=probabilities)
    labels = np.asarray(nib.load(tmp_path / "p.nii.gz").dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3} and 3 in labels
    image = nib.load(probabilities)
    assert image.shape == (*SHAPE, 3) and image.get_data_dtype() == np.uint8  # scl_slope 1/255
    assert np.array_equal(image.affine, nib.load(case_dir / "P005_t1.nii.gz").affine)
    values = image.get_fdata()
    assert 0.0 <= float(values.min()) and float(values.max()) <= 1.0 + 1e-6  # float32 slope
    et = values[..., 2] > 0.51  # clear of the 1/255 rounding at the threshold
    assert et.sum() > 0 and np.all(labels[et] == 3)
    sidecar = json.loads((tmp_path / "p.json").read_text())
    assert sidecar["probabilities"] == str(probabilities) and sidecar["label_convention"] == "brats23"

    predict_case(case_dir, tmp_path / "m.nii.gz", predictor=predictor, labels=LabelConvention.MSD)
    msd = np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj)
    assert np.array_equal(msd == 3, labels == 3) and np.array_equal(msd == 1, labels == 2)


def test_output_folder_gets_the_case_name(case_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    summary = predict_case(case_dir, tmp_path, predictor=predictor)
    assert summary.output == tmp_path / f"P005{PREDICTION_SUFFIX}"
    assert (tmp_path / "P005_pred.json").is_file()


def test_a_failed_write_leaves_no_file(case_dir: Path, predictor: Predictor, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(image: object, filename: str | Path) -> None:
        Path(filename).write_bytes(b"\x1f\x8b partial")  # half-written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(BrainSegError, match="the disk is full"):
        predict_case(case_dir, tmp_path / "out.nii.gz", predictor=predictor)
    assert _folder_files(tmp_path) == set()


def test_inputs_are_never_overwritten(case_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    for name in ("P005_flair.nii.gz", "P005_seg.nii.gz"):
        target = case_dir / name
        before = target.read_bytes()
        with pytest.raises(BrainSegError, match="refusing to overwrite"):
            predict_case(case_dir, target, predictor=predictor)
        assert target.read_bytes() == before
    with pytest.raises(BrainSegError, match="refusing to overwrite"):
        predict_case(case_dir, tmp_path / "x.nii.gz", predictor=predictor,
                     save_probabilities=case_dir / "P005_t2.nii.gz")
    with pytest.raises(BrainSegError, match="would replace the label map"):
        predict_case(case_dir, tmp_path / "x.nii.gz", predictor=predictor, save_probabilities=tmp_path / "x.nii.gz")
    with pytest.raises(BrainSegError, match=r"must end in \.nii\.gz"):
        predict_case(case_dir, tmp_path / "x.png", predictor=predictor)
    assert _folder_files(tmp_path) == set()


def test_cancel_writes_nothing(case_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    token = CancelToken()

    def progress(fraction: float, message: str) -> None:
        if fraction >= 0.5:
            token.cancel()

    with pytest.raises(Cancelled):
        predict_case(case_dir, tmp_path / "out.nii.gz", predictor=predictor, progress=progress, cancel=token)
    assert _folder_files(tmp_path) == set()


def test_missing_sequence_error_and_flagged_result(tmp_path: Path) -> None:
    case = write_phantom_case(tmp_path / "in", seed=6, shape=SHAPE, case_id="P006")
    (case / "P006_t1ce.nii.gz").unlink()
    with pytest.raises(StudyLoadError, match="t1ce.*--allow-missing"):
        predict_case(case, tmp_path / "o.nii.gz", predictor=oracle_predictor())
    summary = predict_case(case, tmp_path / "o.nii.gz", predictor=oracle_predictor(allow_missing=True))
    assert summary.flagged and "FLAGGED" in summary.line() and "t1ce" in summary.line()
    sidecar = json.loads((tmp_path / "o.json").read_text())
    assert sidecar["flagged"] is True and sidecar["missing_sequences"] == ["t1ce"]


def test_summary_line_format() -> None:
    summary = CaseSummary(case_id="X", source=Path("x"), volumes_ml={"WT": 95.25, "TC": 41.5, "ET": 24.25},
                          seconds=4.06, device="CPU, 2 threads")
    assert summary.line() == "X: WT   95.25 mL  TC   41.50 mL  ET   24.25 mL     4.1 s  CPU, 2 threads"


def test_real_case_output_matches_the_expert_seg(real_case: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    card = save_model(tmp_path / "model", build_generator("generator3d", TINY_CONFIG),
                      ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0))
    predictor = Predictor.from_model_dir(tmp_path / "model", device="cpu")
    summary = predict_case(real_case, tmp_path / "pred.nii.gz", predictor=predictor)
    written = nib.load(tmp_path / "pred.nii.gz")
    seg = nib.load(real_case / f"{real_case.name}_seg.nii.gz")
    assert written.shape == seg.shape and np.array_equal(written.affine, seg.affine)
    assert summary.model_version == card.version


def test_allow_resample_puts_a_sequence_on_the_flair_grid(tmp_path: Path, predictor: Predictor) -> None:
    case = write_case(tmp_path / "in", blob_study(SHAPE, case_id="R001"))
    t2 = nib.load(case / "R001_t2.nii.gz")
    coarse = np.asarray(t2.dataobj)[::2, ::2, ::2]  # the T2 at 2 mm, same field of view
    affine = t2.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(coarse, affine), case / "R001_t2.nii.gz")
    with pytest.raises(GridMismatchError):
        predict_case(case, tmp_path / "o.nii.gz", predictor=predictor)
    predict_case(case, tmp_path / "o.nii.gz", predictor=predictor, allow_resample=True)
    written = nib.load(tmp_path / "o.nii.gz")
    assert written.shape == SHAPE
    assert np.array_equal(written.affine, nib.load(case / "R001_flair.nii.gz").affine)


def test_an_output_that_would_join_the_case_is_refused(case_dir: Path, predictor: Predictor) -> None:
    """A P005_seg.nii.gz beside the images would be read as the case's truth next time; nothing is written."""
    before = _folder_files(case_dir)
    (case_dir / "P005_seg.nii.gz").rename(case_dir / "truth.keep")
    try:
        for name in ("P005_seg.nii.gz", "P005_T1CE.nii.gz", "seg.nii.gz"):
            with pytest.raises(BrainSegError, match="would become part of the case"):
                predict_case(case_dir, case_dir / name, predictor=predictor)
        assert _folder_files(case_dir) == (before - {"P005_seg.nii.gz"}) | {"truth.keep"}
        summary = predict_case(case_dir, case_dir, predictor=predictor)  # <case>_pred.nii.gz joins nothing
        assert summary.output.name == "P005_pred.nii.gz"
    finally:
        (case_dir / "truth.keep").rename(case_dir / "P005_seg.nii.gz")
        for extra in ("P005_pred.nii.gz", "P005_pred.json"):
            (case_dir / extra).unlink(missing_ok=True)


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_mask_sidecar_and_probabilities_are_one_set(case_dir: Path, predictor: Predictor, tmp_path: Path,
                                                     point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mask.nii.gz").write_bytes(b"an earlier prediction")

    def predict() -> None:
        predict_case(case_dir, out / "mask.nii.gz", predictor=predictor, save_probabilities=out / "p.nii.gz")

    assert assert_all_or_nothing(predict, out, point, monkeypatch) >= (0 if point == "_keep_copy" else 1)
    assert _folder_files(out) == {"mask.nii.gz", "mask.json", "p.nii.gz"}
