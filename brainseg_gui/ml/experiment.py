"""The paper's experiment, reproducible: every chosen network trained and scored under one recipe.

For each model (FCN-8s, SegNet, U-Net, DeepLab v1/v2, ours), each adversarial setting (the
paper's GAN objective on, or L_rec alone) and each fold, `run_experiment` trains with
`training.train` (same cache, crop, patch sampling, augmentation and post-processing for all),
keeps the LAST epoch's generator (the held-out cases are the test set here, so picking the best
epoch on them would flatter every model), predicts each held-out case with the real predictor at
its full 1 mm resolution and scores it with `core.metrics`. Reports go to OUT (experiment_report.py).

Resumable per run: OUT/runs/<model>-<adv|noadv>/fold<k>/evaluation.json marks a finished run (skipped
when its recipe matches); an unfinished run resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainseg_gui.core.errors import BrainSegError, ModelError, StudyLoadError
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.output_folder import OutputFolder
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.core.read_guard import read_small_text

log = logging.getLogger(__name__)

#: Command-line model name -> (architecture in networks.GENERATORS, label in tables and figures).
MODELS: dict[str, tuple[str, str]] = {
    "fcn": ("fcn8s", "FCN-8s"),
    "segnet": ("segnet", "SegNet"),
    "unet": ("unet", "U-Net"),
    "deeplabv1": ("deeplabv1", "DeepLab v1"),
    "deeplabv2": ("deeplabv2", "DeepLab v2"),
    "ours": ("generator3d", "Ours"),
}
ADVERSARIAL_CHOICES = ("both", "on", "off")
LR_SCHEDULES = ("poly", "constant")
EVALUATION_FILE = "evaluation.json"
RECIPE_FILE = "recipe.json"
#: What the experiment writes into OUT: the runs, the shared cache, the reports (experiment_report.py).
RUNS_FOLDER, CACHE_FOLDER = "runs", "cache"
REPORT_FILES = ("table1.csv", "table1.md", "table2.csv", "table2.md", "figure3.png", "ablation.csv", "ablation.md",
                "per_case.csv", "curves.csv", "curves.png", "config.json")
#: Each run's predicted label maps (BraTS labels 0/1/2/4, on the case's own grid), to check the tables.
PREDICTIONS_FOLDER = "predictions"


class ExperimentError(BrainSegError):
    """The experiment cannot run as asked (unknown model, a run folder from another recipe, ...)."""


@dataclass
class ExperimentConfig:
    """Everything the experiment depends on (written to OUT/config.json).

    The defaults are the CPU schedule (see docs/paper-comparison.md): the paper's optimiser (Adam) and
    augmentations (rotation, flips, intensity), at a coarse resolution, small patches and halved widths,
    trained to a plateau: 2,000 steps of 4 patches, learning rate 1e-3 decayed (poly), outputs started at
    probability 0.01. The paper's 1e-4 constant on 16 patches (`--lr 1e-4 --lr-schedule constant
    --batch-size 16`) left U-Net and both DeepLabs near their initial state in 480 steps and still
    rising after 3,200; 6 models x 2 settings of this schedule fit a 2-core CPU in well under 4 hours.
    """

    data_dirs: list[Path] = field(default_factory=list)
    out_dir: Path = Path("experiment")
    models: list[str] = field(default_factory=lambda: list(MODELS))
    adversarial: str = "both"
    folds: int = 0  # 0: one case-level split holding out `val_fraction` of the patients
    val_fraction: float = 0.25
    epochs: int = 50
    steps_per_epoch: int = 40
    batch_size: int = 4
    lr: float = 1e-3
    lr_schedule: str = "poly"
    lambda_rec: float = 20.0
    dice_loss: bool = True
    patch_size: int = 32
    resolution_mm: float = 3.0
    width_scale: float = 0.5
    et_min_voxels: int = 0  # fixed for every model: nothing is tuned on the held-out cases
    seed: int = 0
    device: str = "auto"
    # One precision for every network (the comparison's one recipe): "off" is fp32. "auto" would mix them
    # on a CPU, where bf16 is used only for networks whose convolutions all see >= 4 voxels (ml/precision.py:
    # not FCN-8s or U-Net at 32^3); on a GPU "auto" is bf16 for all.
    amp: str = "off"
    # Every network's outputs start at this probability (networks.set_output_prior): with PyTorch's
    # initialisation (about 0.5) U-Net and both DeepLabs did not leave "all brain is tumour" in 480 steps.
    output_prior: float = 0.01

    def check(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ExperimentError(f"unknown models {unknown or self.models}; choose from {', '.join(MODELS)}")
        if self.adversarial not in ADVERSARIAL_CHOICES:
            raise ExperimentError(f"adversarial must be one of {ADVERSARIAL_CHOICES}, got {self.adversarial!r}")
        if self.folds == 1 or self.folds < 0:
            raise ExperimentError(f"folds must be 0 (one split) or at least 2, got {self.folds}")
        if not self.width_scale > 0:
            raise ExperimentError(f"width_scale must be positive, got {self.width_scale}")
        if self.batch_size < 2:
            raise ExperimentError(f"batch_size must be at least 2 (BatchNorm; FCN-8s sees 1 voxel at stride 32 "
                                  f"of a 32^3 patch), got {self.batch_size}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ExperimentError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 < self.output_prior < 1.0:
            raise ExperimentError(f"output_prior must be a probability in (0, 1), got {self.output_prior!r}")
        if self.amp not in ("off", "auto", "bf16"):
            raise ExperimentError(f"amp must be off, auto or bf16, got {self.amp!r}")
        if self.patch_size % 32:
            raise ExperimentError(f"patch_size must be a multiple of 32 (FCN-8s pools 5 times), got {self.patch_size}")

    def settings(self) -> list[bool]:
        return {"both": [False, True], "on": [True], "off": [False]}[self.adversarial]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["data_dirs"] = [str(p) for p in self.data_dirs]
        out["out_dir"] = str(self.out_dir)
        return out


@dataclass(frozen=True)
class RunSpec:
    """One training run: a model, with or without the adversarial term, on one fold."""

    model: str
    adversarial: bool
    fold: int
    train_cases: tuple[str, ...]
    test_cases: tuple[str, ...]

    @property
    def variant(self) -> str:
        return f"{self.model}-{'adv' if self.adversarial else 'noadv'}"

    @property
    def label(self) -> str:
        return f"{MODELS[self.model][1]} {'+adv' if self.adversarial else 'no adv'} fold {self.fold}"

    def folder(self, out_dir: Path) -> Path:
        return Path(out_dir) / RUNS_FOLDER / self.variant / f"fold{self.fold}"


@dataclass(frozen=True)
class RunResult:
    """A finished run: per-case metrics {case: {region: {metric: value}}} and how it went."""

    spec: RunSpec
    model_version: str
    parameters: int
    per_case: dict[str, dict[str, dict[str, float | None]]]
    history: list[dict[str, Any]]
    seconds_train: float
    seconds_eval: float


def scaled_config(architecture: str, scale: float) -> dict[str, Any]:
    """The default config of an architecture with every width (and fc width) times `scale`."""
    from brainseg_gui.ml.baselines import BASELINE_CONFIGS
    from brainseg_gui.ml.networks import DEFAULT_CONFIG

    config = dict(DEFAULT_CONFIG if architecture == "generator3d" else BASELINE_CONFIGS[architecture])
    config["widths"] = [max(1, round(w * scale)) for w in config["widths"]]
    if "fc_width" in config:
        config["fc_width"] = max(1, round(config["fc_width"] * scale))
    return config


def plan_runs(config: ExperimentConfig, case_ids: Sequence[str]) -> list[RunSpec]:
    """Every run in order: folds outermost, then models, then adversarial off before on."""
    from brainseg_gui.ml.splits import split_cases

    splits = []
    for fold in range(max(config.folds, 1)):
        train_ids, test_ids = split_cases(case_ids, folds=config.folds, fold=fold,
                                          val_fraction=config.val_fraction, seed=config.seed)
        if not test_ids:
            raise ExperimentError("the split holds out no case: give folds >= 2 or a val_fraction above 0")
        splits.append((fold, tuple(train_ids), tuple(test_ids)))
    return [RunSpec(model, adversarial, fold, train_ids, test_ids)
            for fold, train_ids, test_ids in splits for model in config.models for adversarial in config.settings()]


def train_config(config: ExperimentConfig, spec: RunSpec):  # -> TrainConfig
    """The TrainConfig of one run: the one recipe, this run's network, setting and held-out cases."""
    from brainseg_gui.ml import train_state
    from brainseg_gui.ml.training import TrainConfig

    architecture = MODELS[spec.model][0]
    model_dir = spec.folder(config.out_dir) / "model"
    return TrainConfig(
        data_dirs=list(config.data_dirs), out_dir=model_dir,
        val_cases=list(spec.test_cases), epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
        batch_size=config.batch_size, lr=config.lr, lr_schedule=config.lr_schedule, lambda_rec=config.lambda_rec,
        adversarial=spec.adversarial, dice_loss=config.dice_loss, augment=True, modality_dropout=0.0,
        patch_size=config.patch_size, resolution_mm=config.resolution_mm, architecture=architecture,
        network=scaled_config(architecture, config.width_scale), seed=config.seed, device=config.device,
        resume=train_state.has_state(model_dir), cache_dir=Path(config.out_dir) / CACHE_FOLDER, et_min_voxels=config.et_min_voxels,
        amp=config.amp, output_prior=config.output_prior,
        description=f"{MODELS[spec.model][1]} ({'adversarial' if spec.adversarial else 'L_rec only'}), "
                    f"trained by `brainseg experiment`, fold {spec.fold}. Research use only.",
    )


def _run_recipe(config: ExperimentConfig, spec: RunSpec) -> dict[str, Any]:
    recipe = train_config(config, spec).recipe()
    recipe["train_cases"], recipe["test_cases"] = list(spec.train_cases), list(spec.test_cases)
    return json.loads(json.dumps(recipe))


def _write_json(path: Path, data: Any) -> None:
    from brainseg_gui.ml.checkpoint import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def load_finished(config: ExperimentConfig, spec: RunSpec) -> RunResult | None:
    """The run's result when it finished under this very recipe, else None."""
    path = spec.folder(config.out_dir) / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(read_small_text(path, "evaluation"))
    except (StudyLoadError, ValueError):
        log.warning("%s is unreadable: redoing that run's evaluation", path)
        return None
    if data.get("recipe") != _run_recipe(config, spec):
        return None
    return RunResult(spec, data["model_version"], int(data["parameters"]), data["per_case"], data["history"],
                     float(data["seconds_train"]), float(data["seconds_eval"]))


def run_one(config: ExperimentConfig, spec: RunSpec, cases: dict, *, progress: ProgressFn = no_progress,
            cancel: CancelToken | None = None) -> RunResult:
    """Train (or resume) one run, keep its last epoch, score its held-out cases at full resolution."""
    from brainseg_gui.ml import train_state
    from brainseg_gui.ml.checkpoint import load_model, save_model
    from brainseg_gui.ml.networks import build_generator, parameter_count
    from brainseg_gui.ml.training import train

    folder = spec.folder(config.out_dir)
    recipe = _run_recipe(config, spec)
    recipe_path = folder / RECIPE_FILE
    if recipe_path.is_file():
        try:
            earlier = json.loads(read_small_text(recipe_path, "recipe"))
        except (StudyLoadError, ValueError) as exc:
            raise ExperimentError(f"{recipe_path} is not a recipe this command wrote ({exc}); use another "
                                  "--out or delete that folder to redo it") from None
        if {k: v for k, v in earlier.items() if k != "epochs"} != {k: v for k, v in recipe.items() if k != "epochs"}:
            raise ExperimentError(f"{folder} holds a run of another recipe ({recipe_path}); use another --out "
                                  "or delete that folder to redo it")
    _write_json(recipe_path, recipe)
    started = time.perf_counter()
    result = train(train_config(config, spec), progress=sub_progress(progress, 0.0, 0.85), cancel=cancel)
    seconds_train = time.perf_counter() - started
    state = train_state.load_state(result.model_dir)
    generator = build_generator(state["architecture"], state["network"])
    generator.load_state_dict(state["generator"])
    last = len(result.history)
    card = load_model(result.model_dir).card
    final_card = card.replace(validation={}, training={**card.training, "epoch_kept": last,
                                                        "epochs_done": last, "history": card.training.get("history")})
    final_dir = folder / "final"
    final_card = save_model(final_dir, generator, final_card)
    started = time.perf_counter()
    per_case = evaluate_cases(final_dir, [cases[c] for c in spec.test_cases], folder / PREDICTIONS_FOLDER,
                              device=_evaluation_device(config.device),
                              progress=sub_progress(progress, 0.85, 1.0), cancel=cancel)
    seconds_eval = time.perf_counter() - started
    history = [dataclasses.asdict(h) for h in result.history]
    run = RunResult(spec, final_card.version, parameter_count(generator), per_case, history,
                    round(seconds_train, 1), round(seconds_eval, 1))
    _write_json(folder / EVALUATION_FILE, {
        "recipe": recipe, "model_version": run.model_version, "parameters": run.parameters,
        "per_case": per_case, "history": history, "seconds_train": run.seconds_train,
        "seconds_eval": run.seconds_eval, "model_dir": str(final_dir),
    })
    progress(1.0, f"{spec.label}: done")
    return run


def evaluate_cases(model_dir: Path, cases: Sequence[Any], predictions_dir: Path, *, device: str = "cpu",
                   progress: ProgressFn = no_progress,
                   cancel: CancelToken | None = None) -> dict[str, dict[str, dict[str, float | None]]]:
    """Predict each case with the real predictor, write its label map, score it with core.metrics.

    Returns {case: {region: metrics}}, scored as crossval.evaluate_model scores
    (core.metrics.evaluate_against_study).
    """
    from brainseg_gui.core.image_io import save_label_map
    from brainseg_gui.core.io import load_study
    from brainseg_gui.core.labels import LabelConvention
    from brainseg_gui.core.metrics import evaluate_against_study
    from brainseg_gui.ml.predictor import Predictor

    predictor = Predictor.from_model_dir(model_dir, device=device)
    Path(predictions_dir).mkdir(parents=True, exist_ok=True)
    per_case: dict[str, dict[str, dict[str, float | None]]] = {}
    for index, case in enumerate(cases):
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(index / max(len(cases), 1), f"scoring {case.case_id}")
        study = load_study(case)
        if study.labels is None or study.label_convention is None:
            raise ExperimentError(f"{case.case_id} has no label map to score against")
        prediction = predictor(study, cancel=cancel)
        metrics = evaluate_against_study(prediction.regions, study)
        save_label_map(Path(predictions_dir) / f"{case.case_id}.nii.gz", prediction.labels(LabelConvention.BRATS),
                       study.grid, description=f"brainseg experiment prediction, model {predictor.model_version}")
        per_case[case.case_id] = {region: metrics[region].as_dict() for region in REGIONS}
        log.info("%s: Dice %s", case.case_id, " ".join(f"{r} {metrics[r].dice:.3f}" for r in REGIONS))
    return per_case


def _evaluation_device(device: str) -> str:
    from brainseg_gui.ml.device import select_device

    return str(select_device(device))


def run_experiment(config: ExperimentConfig, *, progress: ProgressFn = no_progress,
                   cancel: CancelToken | None = None,
                   on_run: Callable[[RunSpec, int, int], ProgressFn] | None = None,
                   output: OutputFolder | None = None) -> list[RunResult]:
    """Train and score every run (finished ones are read back), then write every report to OUT.

    `on_run(spec, index, total)` may return a progress callback for that run (a bar per model).
    `output` (OUT claimed by `brainseg experiment`) records the runs, cache and reports once the
    settings, cases and splits have been checked, before the first write.
    """
    from brainseg_gui.ml.crossval import labelled_cases
    from brainseg_gui.ml.experiment_report import write_reports

    config.check()
    started = time.time()
    cases = labelled_cases(config.data_dirs)
    runs = plan_runs(config, sorted(cases))
    out_dir = Path(config.out_dir)
    if output is not None:
        output.own(RUNS_FOLDER, CACHE_FOLDER, *REPORT_FILES)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    for index, spec in enumerate(runs):
        if cancel is not None:
            cancel.raise_if_cancelled()
        part = sub_progress(progress, index / len(runs), (index + 1) / len(runs))
        run_progress = on_run(spec, index, len(runs)) if on_run is not None else None

        def report(fraction: float, message: str, part: ProgressFn = part,
                   extra: ProgressFn | None = run_progress) -> None:
            part(fraction, message)
            if extra is not None:
                extra(fraction, message)

        finished = load_finished(config, spec)
        if finished is not None:
            log.info("%s: finished earlier, read back", spec.label)
            report(1.0, f"{spec.label}: finished earlier")
            results.append(finished)
            continue
        try:
            results.append(run_one(config, spec, cases, progress=report, cancel=cancel))
        except ModelError as error:
            raise ExperimentError(f"{spec.label} failed: {error}") from error
    write_reports(config, results, time.time() - started)
    return results
