"""Case-level cross-validation: train K fold models (or reuse finished ones) and score each on its
held-out cases with the real predictor at the cases' full resolution.

The numbers in model/README.md come from here; the training-time validation Dice in a card is
measured at the model's coarser resolution and is only a guide for picking the best epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brainseg_gui.core.cases import CaseFiles, find_cases
from brainseg_gui.core.errors import ModelError, StudyLoadError
from brainseg_gui.core.io import load_study
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.lesion_metrics import LesionWiseMetrics, lesion_wise_against_study
from brainseg_gui.core.metrics import RegionMetrics, evaluate_against_study
from brainseg_gui.core.output_folder import OutputFolder
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress, sub_progress
from brainseg_gui.ml.checkpoint import CARD_FILE, read_card
from brainseg_gui.ml.training import EMA_FOLDER, LAST_FOLDER, TrainConfig, train

log = logging.getLogger(__name__)

#: Metrics summarised per region (mean and standard deviation over cases).
SUMMARY_METRICS = ("dice", "hd95", "iou", "accuracy", "accuracy_in_brain", "recall", "precision", "specificity")

#: Lesion-wise metrics (BraTS 2023, `core.lesion_metrics`) summarised the same way, under these
#: names: report name -> LesionWiseMetrics field.
LESION_SUMMARY_METRICS = {"lesion_dice": "dice", "lesion_hd95": "hd95"}

#: The report files crossval writes into OUT.
REPORT_FILES = ("per_case.csv", "summary.json", "summary.md")
#: The training cache the folds share, in OUT (unless the template names another).
CACHE_FOLDER = "cache"

#: Columns of per_case.csv holding lesion-wise values: column -> LesionWiseMetrics field.
LESION_CSV_COLUMNS = {"lesion_dice": "dice", "lesion_hd95": "hd95", "gt_lesions": "gt_lesions",
                      "tp_lesions": "tp_lesions", "fp_lesions": "fp_lesions", "fn_lesions": "fn_lesions"}


@dataclass(frozen=True)
class CaseEvaluation:
    """Full-resolution metrics of one held-out case under the model of its fold (lesion-wise ones
    per region too; empty when not computed)."""

    fold: int
    case_id: str
    model_version: str
    metrics: dict[str, RegionMetrics]
    seconds: float
    lesion_wise: dict[str, LesionWiseMetrics] = field(default_factory=dict)


def labelled_cases(data_dirs: Sequence[Path]) -> dict[str, CaseFiles]:
    """case id -> files, for every labelled case under the folders."""
    cases = {case.case_id: case for folder in data_dirs for case in find_cases(Path(folder)) if case.seg}
    if not cases:
        raise StudyLoadError(f"no labelled case found in {[str(d) for d in data_dirs]}")
    return cases


def evaluate_model(model_dir: Path, cases: Sequence[CaseFiles], *, fold: int = 0, device: str = "cpu",
                   tta: bool = False, lesions: bool = True, progress: ProgressFn = no_progress,
                   cancel: CancelToken | None = None) -> list[CaseEvaluation]:
    """Predict each case with the model in `model_dir` and score it against its own labels (with the
    lesion-wise scores unless `lesions` is False: ~1 s a case that the fine-tune panel does not show)."""
    import time

    from brainseg_gui.ml.predictor import Predictor

    predictor = Predictor.from_model_dir(model_dir, device=device, tta=tta)
    results = []
    for index, case in enumerate(cases):
        if cancel is not None:
            cancel.raise_if_cancelled()
        progress(index / max(len(cases), 1), f"fold {fold}: {case.case_id}")
        started = time.perf_counter()
        study = load_study(case)
        assert study.labels is not None and study.label_convention is not None  # labelled_cases() only
        prediction = predictor(study, cancel=cancel)
        metrics = evaluate_against_study(prediction.regions, study)
        by_lesion = lesion_wise_against_study(prediction.regions, study) if lesions else {}
        results.append(CaseEvaluation(fold, case.case_id, predictor.model_version, metrics,
                                      time.perf_counter() - started, by_lesion))
        log.info("fold %d %s: Dice %s", fold, case.case_id,
                 " ".join(f"{r} {metrics[r].dice:.3f}" for r in REGIONS))
    return results


def run_crossval(template: TrainConfig, folds: int, out_dir: Path, *, train_missing: bool = True,
                 device: str = "cpu", tta: bool = False, progress: ProgressFn = no_progress,
                 cancel: CancelToken | None = None, output: OutputFolder | None = None,
                 earlier: Sequence[CaseEvaluation] = (), weights: str = "best") -> list[CaseEvaluation]:
    """Train fold i into OUT/fold{i} unless a model is already there, then evaluate every fold's
    `weights` (FOLD_WEIGHTS: its best epoch, last epoch or moving average).

    With `train_missing=False` only the folds already trained are evaluated (a warning names the
    others), so a partial run still gives honest held-out numbers. `earlier` (an earlier run's
    per_case.csv, `read_per_case`) gives the figures of folds whose model is not in OUT: folds trained
    in another session or on another machine; each must hold exactly that fold's held-out cases of
    this split, or it is refused (the recipe is not in the table: its model_version column names the
    model each row was scored with). Writes OUT/per_case.csv,
    OUT/summary.json and OUT/summary.md. `output` (OUT claimed by `brainseg crossval`) records the
    folds, the cache and the reports once the cases and folds have been checked, before any write
    (evaluating only: the reports, just before they are written).
    """
    from brainseg_gui.ml.splits import split_cases

    if folds < 2:
        raise StudyLoadError(f"cross-validation needs at least 2 folds, got {folds}")
    beyond = sorted({e.fold for e in earlier if not 0 <= e.fold < folds})
    if beyond:
        raise StudyLoadError(f"the earlier figures hold fold {', '.join(map(str, beyond))}, but there are {folds} "
                             f"folds (0-{folds - 1}): give the --folds they were made with")
    cases = labelled_cases(template.data_dirs)
    cache_dir = Path(template.cache_dir or Path(out_dir) / CACHE_FOLDER)
    if train_missing:
        for fold in range(folds):  # a split that cannot be made refuses before anything is written
            split_cases(sorted(cases), folds=folds, fold=fold, seed=template.seed)
    if output is not None and train_missing:
        own: list[Path | str] = [*REPORT_FILES, *(f"fold{fold}" for fold in range(folds))]
        if Path(output.folder).absolute() in cache_dir.absolute().parents:
            own.append(cache_dir)
        output.own(*own)
    evaluations: list[CaseEvaluation] = []
    missing: list[int] = []
    for fold in range(folds):
        fold_dir = Path(out_dir) / f"fold{fold}"
        part = sub_progress(progress, fold / folds, (fold + 1) / folds)
        trained = (fold_dir / CARD_FILE).exists()
        recorded = [e for e in earlier if e.fold == fold]
        if not trained and recorded:
            evaluations += _checked_record(recorded, cases, folds, fold, template.seed)
            continue
        if not train_missing and not trained:
            missing.append(fold)
            continue
        if not trained or (template.resume and train_missing):
            config = dataclasses.replace(template, folds=folds, fold=fold, out_dir=fold_dir, cache_dir=cache_dir)
            train(config, progress=sub_progress(part, 0.0, 0.8), cancel=cancel)
        model_dir = delivered_model(fold_dir, weights)
        held_out = read_card(model_dir).training.get("validation_cases", [])
        unknown = sorted(set(held_out) - set(cases))
        if unknown:
            raise StudyLoadError(f"fold {fold} held out cases not found in the data folders: {unknown}")
        evaluations += evaluate_model(model_dir, [cases[c] for c in held_out], fold=fold, device=device,
                                      tta=tta, progress=sub_progress(part, 0.8, 1.0), cancel=cancel)
    if missing:
        if not evaluations:
            raise ModelError(f"no trained fold model in {out_dir} (looked for fold0..fold{folds - 1}/{CARD_FILE})")
        log.warning("folds %s have no trained model in %s: evaluated the others only",
                    ", ".join(map(str, missing)), out_dir)
    if output is not None:
        output.own(*REPORT_FILES)  # evaluating only: recorded once there is something to write
    write_reports(evaluations, Path(out_dir))
    return evaluations


#: What `run_crossval` scores of each fold: its model folder's weights -> where they are in the fold.
#: "best" is the epoch of best validation Dice, picked on the very cases it is then scored on, which
#: flatters the recipe; "last" (the latest epoch) and "ema" (the moving average, runs trained with
#: `ema_decay`) are what a run without held-out cases, the all-cases model, delivers.
FOLD_WEIGHTS = {"best": "", "last": LAST_FOLDER, "ema": EMA_FOLDER}


def delivered_model(fold_dir: Path, weights: str = "best") -> Path:
    """The model directory of a fold's `weights` (a FOLD_WEIGHTS key)."""
    model_dir = fold_dir / FOLD_WEIGHTS[weights]
    if weights != "best" and not (model_dir / CARD_FILE).exists():
        why = ("it was trained without --ema" if weights == "ema" else
               "it was trained before BrainSeg kept the last epoch: resuming the run (brainseg train --resume) writes it")
        raise ModelError(f"{fold_dir} has no {weights} model ({model_dir}): {why}")
    return model_dir


def read_per_case(path: Path) -> list[CaseEvaluation]:
    """The case evaluations in an earlier run's per_case.csv (as `write_reports` writes it).

    Why: a fold takes hours on a CPU, so the folds of one cross-validation may be trained in different
    sessions or on different machines; their held-out figures travel as this small file (the project
    keeps its record in docs/crossval/) while the models stay where they were trained."""
    from brainseg_gui.core.read_guard import read_small_text

    text = read_small_text(Path(path), "cross-validation table").removeprefix("\ufeff")  # a spreadsheet's BOM
    needed = ["fold", "case_id", "model_version", "region", *RegionMetrics.__dataclass_fields__]
    by_case: dict[tuple[int, str], dict[str, dict[str, str]]] = {}
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or any(column not in rows[0] for column in needed):
            raise StudyLoadError(f"{path} is not a per_case.csv of `brainseg crossval` (columns {', '.join(needed)})")
        for line, row in enumerate(rows, start=2):
            regions = by_case.setdefault((int(row["fold"]), row["case_id"]), {})
            if row["region"] in regions:
                raise ValueError(f"line {line} repeats {row['case_id']} {row['region']} of fold {row['fold']}")
            regions[row["region"]] = row
        evaluations = []
        for (fold, case_id), regions in by_case.items():
            if sorted(regions) != sorted(REGIONS):
                raise ValueError(f"{case_id} has regions {sorted(regions)}, not {list(REGIONS)}")
            metrics = {r: _region_metrics(regions[r]) for r in REGIONS}
            lesions = {r: _lesion_metrics(regions[r]) for r in REGIONS if regions[r].get("lesion_dice")}
            if lesions and len(lesions) != len(REGIONS):
                raise ValueError(f"{case_id} has lesion-wise figures for {', '.join(lesions)} only")
            evaluations.append(CaseEvaluation(fold, case_id, regions[REGIONS[0]]["model_version"], metrics,
                                              float("nan"), lesions))
    except (ValueError, TypeError, KeyError, csv.Error) as error:
        raise StudyLoadError(f"{path}: unreadable table ({' '.join(str(error).split())})") from error
    return evaluations


def _region_metrics(row: dict[str, str]) -> RegionMetrics:
    values = {name: float(row[name]) for name in RegionMetrics.__dataclass_fields__ if name != "accuracy_in_brain"}
    in_brain = row["accuracy_in_brain"]  # None (no brain mask) is written as an empty cell
    return RegionMetrics(accuracy_in_brain=float(in_brain) if in_brain not in ("", "None") else None, **values)


def _lesion_metrics(row: dict[str, str]) -> LesionWiseMetrics:
    return LesionWiseMetrics(dice=float(row["lesion_dice"]), hd95=float(row["lesion_hd95"]),
                             gt_lesions=int(row["gt_lesions"]), tp_lesions=int(row["tp_lesions"]),
                             fp_lesions=int(row["fp_lesions"]), fn_lesions=int(row["fn_lesions"]))


def _checked_record(recorded: list[CaseEvaluation], cases: dict[str, CaseFiles], folds: int, fold: int,
                    seed: int) -> list[CaseEvaluation]:
    """An earlier run's figures of `fold`, refused unless they are this split's held-out cases."""
    from brainseg_gui.ml.splits import split_cases

    _, held_out = split_cases(sorted(cases), folds=folds, fold=fold, seed=seed)
    if sorted(e.case_id for e in recorded) != sorted(held_out):
        raise StudyLoadError(
            f"the earlier figures of fold {fold} are of cases {sorted(e.case_id for e in recorded)}, but fold {fold} "
            f"of this split ({folds} folds, seed {seed}) holds out {sorted(held_out)}")
    log.info("fold %d: figures of model %s from the earlier run (%d cases)", fold, recorded[0].model_version,
             len(recorded))
    return recorded


def summarise(evaluations: Sequence[CaseEvaluation]) -> dict[str, dict[str, dict[str, float]]]:
    """region -> metric -> {mean, sd, median, min} over cases; lesion-wise metrics as lesion_dice and
    lesion_hd95, over the cases that have them."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for region in REGIONS:
        summary[region] = {}
        columns = {metric: [getattr(e.metrics[region], metric) for e in evaluations] for metric in SUMMARY_METRICS}
        for name, attribute in LESION_SUMMARY_METRICS.items():
            columns[name] = [getattr(e.lesion_wise[region], attribute) for e in evaluations if e.lesion_wise]
        for metric, column in columns.items():
            values = [float(v) for v in column if v is not None]
            if values:
                summary[region][metric] = _stats(values)
    return summary


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "median": statistics.median(values),
        "min": min(values),
    }


def summary_markdown(evaluations: Sequence[CaseEvaluation]) -> str:
    """A Markdown table: per region, mean ± sd over held-out cases of the main metrics."""
    summary = summarise(evaluations)
    shown = ("dice", "hd95", "lesion_dice", "lesion_hd95", "iou", "recall", "precision", "accuracy_in_brain")
    lines = ["| region | " + " | ".join(shown) + " |", "| --- |" + " --- |" * len(shown)]
    for region in REGIONS:
        cells = []
        for metric in shown:
            stats = summary[region].get(metric)
            cells.append("n/a" if stats is None else f"{stats['mean']:.3f} ± {stats['sd']:.3f}")
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    folds = sorted({e.fold for e in evaluations})
    lines.append("")
    plural = "s" if len(folds) != 1 else ""
    lines.append(f"{len(evaluations)} held-out cases over {len(folds)} fold{plural}; mean ± sd over cases; "
                 "HD95 in mm; metrics at the cases' full 1 mm resolution; lesion_* are the BraTS 2023 "
                 "lesion-wise scores (glioma rules).")
    return "\n".join(lines)


def write_reports(evaluations: Sequence[CaseEvaluation], out_dir: Path) -> None:
    """per_case.csv, summary.json and summary.md in `out_dir` (each written atomically)."""
    from brainseg_gui.ml.checkpoint import atomic_write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["fold", "case_id", "model_version", "region", *RegionMetrics.__dataclass_fields__,
                     *LESION_CSV_COLUMNS])
    for e in evaluations:
        for region in REGIONS:
            lesions = e.lesion_wise.get(region)
            writer.writerow([e.fold, e.case_id, e.model_version, region,
                             *(e.metrics[region].as_dict().values()),
                             *(getattr(lesions, a) if lesions else "" for a in LESION_CSV_COLUMNS.values())])
    per_case, summary_json, summary_md = (out_dir / name for name in REPORT_FILES)
    atomic_write_bytes(per_case, buffer.getvalue().encode())
    summary = {"cases": len(evaluations), "folds": sorted({e.fold for e in evaluations}),
               "regions": summarise(evaluations)}
    atomic_write_bytes(summary_json, json.dumps(summary, indent=2).encode())
    atomic_write_bytes(summary_md, (summary_markdown(evaluations) + "\n").encode())
