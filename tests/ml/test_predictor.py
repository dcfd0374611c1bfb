"""Predictor: output on the exact input grid in any orientation and spacing, TTA, cancel, missing
sequences, out-of-memory retries, and model directories that must be refused.

An "oracle" network (a fixed 1x1x1 convolution, see predict_oracle.py) makes predictions that should
overlap the blob study's labels, so a mirrored or shifted paste-back fails the Dice checks; the
phantom and tiny random generators test the plumbing and loading from a model directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from predict_oracle import TINY_CONFIG, Oracle, blob_study, oracle_predictor
from torch import nn

from brainseg_gui.core.errors import BrainSegError, Cancelled, ModelError, StudyLoadError
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.core.phantom import make_phantom
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.core.study import Grid, Study
from brainseg_gui.ml.checkpoint import CARD_FILE, WEIGHTS_FILE, ModelCard, save_model
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.prediction import Prediction, WindowSettings
from brainseg_gui.ml.predictor import TTA_FLIPS, Predictor

SHAPE = (48, 56, 40)
def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def reoriented(study: Study, flips: tuple[int, ...], permutation: tuple[int, int, int]) -> Study:
    """The same anatomy stored with flipped / permuted axes, the affine changed to match."""
    shape = study.grid.shape
    affine = study.grid.affine.copy()
    for axis in flips:  # voxel i -> n-1-i along `axis`
        flip = np.eye(4)
        flip[axis, axis] = -1
        flip[axis, 3] = shape[axis] - 1
        affine = affine @ flip
    swap = np.eye(4)[[*permutation, 3]].T  # new axis a is old axis permutation[a]
    affine = affine @ swap

    def move(array: np.ndarray) -> np.ndarray:
        out = np.flip(array, flips) if flips else array
        return np.ascontiguousarray(np.transpose(out, permutation))

    assert study.labels is not None
    return Study(
        case_id=study.case_id,
        grid=Grid(tuple(shape[p] for p in permutation), affine),  # type: ignore[arg-type]
        images={name: move(image) for name, image in study.images.items()},
        labels=move(study.labels),
        label_convention=study.label_convention,
    )


@pytest.fixture(scope="module")
def phantom() -> Study:
    """The blob study (LPS like BraTS), whose tumour the oracle finds."""
    return blob_study(SHAPE)


@pytest.fixture(scope="module")
def lps_prediction(phantom: Study) -> Prediction:
    return oracle_predictor()(phantom, keep_probabilities=True)


def test_prediction_lies_on_the_input_grid_and_overlaps_the_tumour(phantom: Study,
                                                                    lps_prediction: Prediction) -> None:
    assert phantom.grid.axcodes == ("L", "P", "S")
    assert lps_prediction.grid is phantom.grid
    assert lps_prediction.regions.shape == (3, *SHAPE) and lps_prediction.regions.dtype == bool
    truth = to_regions(phantom.labels, LabelConvention.BRATS)  # type: ignore[arg-type]
    assert dice(lps_prediction.regions[0], truth[0]) > 0.85
    assert dice(lps_prediction.regions[2], truth[2]) > 0.7
    assert lps_prediction.probabilities is not None
    assert lps_prediction.probabilities.dtype == np.float16
    assert lps_prediction.probabilities.shape == (3, *SHAPE)
    # regions are the thresholded probabilities, grown for nesting (float16 rounding aside)
    assert dice(lps_prediction.probabilities[0] > 0.5, lps_prediction.regions[0]) > 0.95
    assert set(lps_prediction.seconds) == {"prepare", "network", "postprocess", "total"}
    assert lps_prediction.model_version == "oracle" and lps_prediction.device.startswith("CPU")
    assert not lps_prediction.flagged and lps_prediction.missing == ()


@pytest.mark.parametrize(("flips", "permutation"), [((0, 1), (0, 1, 2)), ((2,), (2, 0, 1)), ((), (1, 0, 2))])
def test_any_axis_order_gives_the_same_anatomy(phantom: Study, lps_prediction: Prediction,
                                               flips: tuple[int, ...], permutation: tuple[int, int, int]) -> None:
    """RAS storage (flips 0, 1), permuted axes: the prediction is the LPS one, moved the same way."""
    moved = reoriented(phantom, flips, permutation)
    prediction = oracle_predictor()(moved)
    assert prediction.grid is moved.grid
    expected = np.stack([np.transpose(np.flip(r, flips) if flips else r, permutation)
                         for r in lps_prediction.regions])
    assert np.array_equal(prediction.regions, expected)
    if flips == (0, 1):
        assert moved.grid.axcodes == ("R", "A", "S")


def test_anisotropic_spacing_keeps_grid_and_tumour() -> None:
    study = blob_study((40, 48, 24), (1.2, 1.2, 2.5))
    prediction = oracle_predictor()(study)
    assert prediction.regions.shape == (3, 40, 48, 24)
    truth = to_regions(study.labels, LabelConvention.BRATS)  # type: ignore[arg-type]
    assert dice(prediction.regions[0], truth[0]) > 0.85
    assert dice(prediction.regions[2], truth[2]) > 0.7
    assert prediction.volumes_ml()["WT"] == pytest.approx(prediction.regions[0].sum() * 1.2 * 1.2 * 2.5 / 1000)


@pytest.mark.parametrize("convention", list(LabelConvention))
def test_labels_use_only_the_conventions_values(lps_prediction: Prediction, convention: LabelConvention) -> None:
    labels = lps_prediction.labels(convention)
    assert labels.dtype == np.uint8 and labels.shape == SHAPE
    values = set(np.unique(labels).tolist())
    assert values <= convention.allowed_values
    assert {0, convention.tissue_values["ED"], convention.tissue_values["ET"]} <= values


def test_a_phantom_case_runs_through() -> None:
    study = make_phantom((40, 48, 36), seed=3)
    prediction = oracle_predictor()(study)
    assert prediction.regions.shape == (3, 40, 48, 36) and prediction.grid is study.grid
    wt, tc, et = prediction.regions
    assert np.all(et <= tc) and np.all(tc <= wt)
    assert set(np.unique(prediction.labels()).tolist()) <= {0, 1, 2, 4}


def test_regions_are_nested(lps_prediction: Prediction) -> None:
    wt, tc, et = lps_prediction.regions
    assert np.all(et <= tc) and np.all(tc <= wt)


def test_tta_runs_every_mirror_and_agrees_for_a_mirror_symmetric_network(
        phantom: Study, lps_prediction: Prediction) -> None:
    predictor = oracle_predictor(tta=True)
    prediction = predictor(phantom)
    assert prediction.tta
    assert len(TTA_FLIPS) == 8 and predictor.network.calls == 8  # type: ignore[attr-defined]
    for index in range(3):
        assert dice(prediction.regions[index], lps_prediction.regions[index]) > 0.99


def test_small_et_is_relabelled_per_card(phantom: Study) -> None:
    card = ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0, version="oracle",
                     postprocess={"threshold": 0.5, "et_min_voxels": 10**6})
    prediction = Predictor(Oracle(), card=card, device=torch.device("cpu"))(phantom)
    assert not prediction.regions[2].any()
    assert prediction.regions[1].sum() > 0


def test_cancel_before_and_between_windows(phantom: Study) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        oracle_predictor()(phantom, cancel=token)

    token = CancelToken()
    messages: list[str] = []

    def progress(fraction: float, message: str) -> None:
        messages.append(message)
        if message.startswith("window 1 "):
            token.cancel()

    predictor = oracle_predictor(windows=WindowSettings(roi=(16, 16, 16), overlap=0.25))
    with pytest.raises(Cancelled):
        predictor(phantom, progress=progress, cancel=token)
    assert predictor.network.calls == 1  # type: ignore[attr-defined]  # stopped after the first window


def test_a_single_window_equals_monais_sliding_window() -> None:
    """The one-window shortcut (no MONAI import) gives what sliding_window_inference gives."""
    from monai.inferers import sliding_window_inference

    from brainseg_gui.ml.predictor import _sliding_window

    torch.manual_seed(0)
    network = build_generator("generator3d", TINY_CONFIG).eval()
    volume = torch.randn(1, 4, 16, 24, 16)
    with torch.inference_mode():
        ours = _sliding_window(volume, (16, 24, 16), network, WindowSettings())
        monai = sliding_window_inference(volume, (16, 24, 16), 1, network, overlap=0.25, mode="gaussian")
    assert torch.allclose(ours, monai, atol=1e-5)


def test_missing_sequence_is_an_error_unless_allowed(phantom: Study) -> None:
    images = {name: image for name, image in phantom.images.items() if name != "flair"}
    partial = Study(case_id="partial", grid=phantom.grid, images=images)
    with pytest.raises(StudyLoadError, match=r"lacks the sequence\(s\) flair.*--allow-missing"):
        oracle_predictor()(partial)
    prediction = oracle_predictor(allow_missing=True)(partial)
    assert prediction.flagged and "flair" in prediction.flag_reason
    assert prediction.missing == ("flair",)


class _OutOfMemoryAbove(nn.Module):
    """Raises torch.OutOfMemoryError for windows with more than `limit` voxels."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.inner = Oracle()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2:].numel() > self.limit:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return self.inner(x)


def test_out_of_memory_retries_with_smaller_windows(phantom: Study, lps_prediction: Prediction) -> None:
    card = ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0, version="oracle")
    predictor = Predictor(_OutOfMemoryAbove(16**3), card=card, device=torch.device("cpu"),
                          windows=WindowSettings(roi=(32, 32, 32), overlap=0.25))
    prediction = predictor(phantom)
    # the 24x28x20 (padded) model-resolution volume fits one 32^3 window; halved: 12x14x10 windows
    assert [note.split("retrying with ")[1] for note in prediction.notes] == ["12x14x10"]
    assert max(np.prod(s) for s in predictor.network.inner.shapes) <= 16**3  # type: ignore[attr-defined]
    # Gaussian blending of 1x1x1 outputs over several windows gives the same masks, up to rounding
    assert dice(prediction.regions[0], lps_prediction.regions[0]) > 0.99

    never = Predictor(_OutOfMemoryAbove(0), card=card, device=torch.device("cpu"))
    with pytest.raises(ModelError, match="out of memory on the CPU"):
        never(phantom)


# -- model directories ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    card = ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0,
                     postprocess={"threshold": 0.5, "et_min_voxels": 20})
    save_model(folder, build_generator("generator3d", TINY_CONFIG), card)
    return folder


def test_from_model_dir_runs_a_saved_generator(tiny_model_dir: Path, phantom: Study) -> None:
    predictor = Predictor.from_model_dir(tiny_model_dir, device="cpu", tta=True)
    card = json.loads((tiny_model_dir / CARD_FILE).read_text())
    assert predictor.model_version == card["version"] and len(card["version"]) == 12
    assert predictor.settings.postprocess.et_min_voxels == 20
    prediction = predictor(phantom)
    assert prediction.regions.shape == (3, *SHAPE)
    assert prediction.model_version == card["version"] and prediction.tta
    wt, tc, et = prediction.regions
    assert np.all(et <= tc) and np.all(tc <= wt)


def test_a_pickle_file_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    pickle_file = tmp_path / "model.pt"
    torch.save(build_generator("generator3d", TINY_CONFIG).state_dict(), pickle_file)
    with pytest.raises(ModelError, match="pickle"):
        Predictor.from_model_dir(pickle_file, device="cpu")
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / CARD_FILE).write_bytes((tiny_model_dir / CARD_FILE).read_bytes())
    torch.save({}, folder / "weights.pt")
    with pytest.raises(ModelError, match=r"no weights\.safetensors.*weights\.pt"):
        Predictor.from_model_dir(folder, device="cpu")


def test_a_missing_card_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / WEIGHTS_FILE).write_bytes((tiny_model_dir / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ModelError, match=r"no card\.json"):
        Predictor.from_model_dir(tmp_path, device="cpu")
    with pytest.raises(ModelError, match="does not exist"):
        Predictor.from_model_dir(tmp_path / "absent", device="cpu")


def test_weights_of_the_wrong_shape_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / WEIGHTS_FILE).write_bytes((tiny_model_dir / WEIGHTS_FILE).read_bytes())
    card = json.loads((tiny_model_dir / CARD_FILE).read_text())
    card["config"] = {"widths": [4, 16], "convs_per_level": 1}
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="wrong shapes"):
        Predictor.from_model_dir(tmp_path, device="cpu")


def test_bad_postprocess_settings_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / WEIGHTS_FILE).write_bytes((tiny_model_dir / WEIGHTS_FILE).read_bytes())
    card = json.loads((tiny_model_dir / CARD_FILE).read_text())
    card["postprocess"] = {"threshold": 2.0}
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(BrainSegError, match="threshold"):
        Predictor.from_model_dir(tmp_path, device="cpu")


def test_cuda_without_gpu_is_a_clear_error(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BrainSegError, match="no usable CUDA GPU"):
        Predictor.from_model_dir(tiny_model_dir, device="cuda")


# -- a real case --------------------------------------------------------------------------------------


def test_real_case_prediction_matches_the_expert_segs_grid(real_case: Path, tiny_model_dir: Path) -> None:
    from brainseg_gui.core.io import load_study

    study = load_study(real_case)
    prediction = Predictor.from_model_dir(tiny_model_dir, device="cpu")(study)
    seg = nib.load(real_case / f"{real_case.name}_seg.nii.gz")
    assert prediction.regions.shape == (3, *seg.shape) == (3, 240, 240, 155)
    assert np.allclose(prediction.grid.affine, seg.affine, atol=1e-6, rtol=0)
    assert prediction.labels().shape == seg.shape


# -- CUDA (run where a GPU is present) ----------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_prediction_agrees_with_the_cpu(tiny_model_dir: Path, phantom: Study) -> None:
    on_cpu = Predictor.from_model_dir(tiny_model_dir, device="cpu")(phantom, keep_probabilities=True)
    on_gpu = Predictor.from_model_dir(tiny_model_dir, device="cuda")(phantom, keep_probabilities=True)
    assert on_gpu.device.endswith("(CUDA)")
    assert on_gpu.probabilities is not None and on_cpu.probabilities is not None
    difference = np.abs(on_gpu.probabilities.astype(np.float32) - on_cpu.probabilities.astype(np.float32))
    assert float(difference.max()) < 0.05  # autocast (bf16/fp16) against float32
    for index in range(3):
        assert (on_gpu.regions[index] != on_cpu.regions[index]).mean() < 0.01


@needs_cuda
def test_cuda_out_of_memory_falls_back_to_the_cpu(phantom: Study) -> None:
    class OutOfMemoryOnCuda(Oracle):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.is_cuda:
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")
            return super().forward(x)

    card = ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0, version="oracle")
    predictor = Predictor(OutOfMemoryOnCuda().cuda(), card=card, device=torch.device("cuda"))
    prediction = predictor(phantom)
    assert prediction.device.startswith("CPU")
    assert sum("retrying" in note for note in prediction.notes) == 2
    assert any("on the CPU" in note for note in prediction.notes)
    assert next(predictor.network.parameters()).is_cuda  # the predictor itself stays on the GPU
    expected = oracle_predictor()(phantom)
    assert np.array_equal(prediction.regions, expected.regions)


def test_nothing_is_labelled_outside_the_brain(phantom: Study) -> None:
    """A network that says "enhancing tumour" everywhere must not grow WT over the background."""

    class Everywhere(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 3, *x.shape[2:]), 8.0)

    card = ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0, version="everywhere")
    prediction = Predictor(Everywhere(), card=card, device=torch.device("cpu"))(phantom)  # type: ignore[arg-type]
    brain = phantom.stacked().any(axis=0)
    assert not prediction.regions[:, ~brain].any()
    assert prediction.regions[0][brain].mean() > 0.99  # inside, the network's answer stands
