"""The experiment's reports: the paper's Tables 1 and 2, its Figure 3, the ablation, curves, config.

Every number is a mean over the held-out cases (pooled over folds) of the per-case metrics in
per_case.csv, so each table can be checked against that file. Metrics are `core.metrics` at the
cases' full 1 mm resolution; pixel accuracy over the whole volume (background-dominated, as the
paper's) and inside the brain mask (non-zero in any sequence).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainseg_gui.core.labels import REGIONS
from brainseg_gui.ml.checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    from brainseg_gui.ml.experiment import ExperimentConfig, RunResult

log = logging.getLogger(__name__)

#: (metric key in core.metrics.RegionMetrics, title) of the paper's Table 1 and Table 2.
TABLE1 = (("accuracy", "Pixel accuracy (whole volume)"), ("accuracy_in_brain", "Pixel accuracy (inside brain)"),
          ("recall", "Recall"))
TABLE2 = (("iou", "IoU"), ("dice", "Dice"))
#: Metrics of the ablation (adversarial on vs off, paired over cases).
ABLATION_METRICS = ("dice", "iou")
COLUMNS = (*REGIONS, "mean")


def _variant_name(model: str, adversarial: bool) -> str:
    return f"{model}-{'adv' if adversarial else 'noadv'}"


def case_values(results: Sequence[RunResult], metric: str) -> dict[str, dict[str, dict[str, float]]]:
    """variant -> column (WT, TC, ET, mean) -> {fold:case: value}; 'mean' is the mean over regions."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run in results:
        columns = out.setdefault(run.spec.variant, {column: {} for column in COLUMNS})
        for case, regions in run.per_case.items():
            key = f"{run.spec.fold}:{case}"
            values = [regions[r][metric] for r in REGIONS]
            for region, value in zip(REGIONS, values):
                if value is not None and math.isfinite(float(value)):
                    columns[region][key] = float(value)
            finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
            if len(finite) == len(REGIONS):
                columns["mean"][key] = statistics.fmean(finite)
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _variants(results: Sequence[RunResult]) -> list[tuple[str, bool]]:
    """(model, adversarial) in the order the runs were planned, each once."""
    return list(dict.fromkeys((run.spec.model, run.spec.adversarial) for run in results))


def metric_table(results: Sequence[RunResult], metrics: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per model, setting and metric: mean and sd over cases per region and of the region mean."""
    from brainseg_gui.ml.experiment import MODELS

    rows = []
    for metric, _ in metrics:
        values = case_values(results, metric)
        for model, adversarial in _variants(results):
            columns = values[_variant_name(model, adversarial)]
            row: dict[str, Any] = {"model": model, "label": MODELS[model][1],
                                   "adversarial": "on" if adversarial else "off", "metric": metric,
                                   "cases": len(columns["WT"])}
            for column in COLUMNS:
                mean, sd = _mean_sd(list(columns[column].values()))
                row[column], row[f"{column}_sd"] = mean, sd
            rows.append(row)
    return rows


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["model"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)) for k, v in row.items()})
    return buffer.getvalue()


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    """A p-value: three decimals, or two significant digits below 0.001."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def table_markdown(rows: Sequence[dict[str, Any]], metrics: Sequence[tuple[str, str]], title: str) -> str:
    lines = [f"# {title}", ""]
    for metric, heading in metrics:
        lines += [f"## {heading}", "", "| model | adversarial | WT | TC | ET | mean | cases |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in rows:
            if row["metric"] == metric:
                cells = " | ".join(f"{_fmt(row[c])} ± {_fmt(row[f'{c}_sd'], 3)}" for c in COLUMNS)
                lines.append(f"| {row['label']} | {row['adversarial']} | {cells} | {row['cases']} |")
        lines.append("")
    lines.append("Mean ± sd over held-out cases (pooled over folds), at the cases' full resolution; "
                 "'mean' = mean over the three regions. Per-case values: per_case.csv.")
    return "\n".join(lines) + "\n"


def paired_test(on: Sequence[float], off: Sequence[float]) -> dict[str, float | None]:
    """Wilcoxon signed-rank and paired t-test p-values of on vs off (None when undefined)."""
    from scipy import stats

    differences = [a - b for a, b in zip(on, off)]
    out: dict[str, float | None] = {"wilcoxon_p": None, "ttest_p": None}
    if len(differences) < 2:
        return out
    if all(d == 0 for d in differences):
        return {"wilcoxon_p": 1.0, "ttest_p": 1.0}
    out["wilcoxon_p"] = float(stats.wilcoxon(on, off).pvalue)
    t = stats.ttest_rel(on, off).pvalue
    out["ttest_p"] = float(t) if math.isfinite(float(t)) else None
    return out


def ablation_rows(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Each model run both ways: per metric and region, means on/off, difference, paired tests."""
    from brainseg_gui.ml.experiment import MODELS

    rows = []
    models = [m for m in dict.fromkeys(run.spec.model for run in results)
              if {(m, True), (m, False)} <= set(_variants(results))]
    for metric in ABLATION_METRICS:
        values = case_values(results, metric)
        for model in models:
            on, off = values[_variant_name(model, True)], values[_variant_name(model, False)]
            for column in COLUMNS:
                keys = sorted(set(on[column]) & set(off[column]))
                a, b = [on[column][k] for k in keys], [off[column][k] for k in keys]
                folds = sorted({k.split(":")[0] for k in keys})
                fold_diffs = [statistics.fmean([on[column][k] - off[column][k] for k in keys if k.startswith(f + ":")])
                              for f in folds]
                mean_on, _ = _mean_sd(a)
                mean_off, _ = _mean_sd(b)
                diff, diff_sd = _mean_sd([x - y for x, y in zip(a, b)])
                rows.append({"model": model, "label": MODELS[model][1], "metric": metric, "region": column,
                             "adversarial_on": mean_on, "adversarial_off": mean_off, "difference": diff,
                             "difference_sd": diff_sd, "pairs": len(keys),
                             "fold_differences": " ".join(f"{d:+.4f}" for d in fold_diffs),
                             **paired_test(a, b)})
    return rows


def ablation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["# Ablation: with and without the adversarial term", ""]
    if not rows:
        note = "No model was run both with and without the adversarial term (use --adversarial both)."
        return "\n".join([*lines, note, ""])
    for metric in ABLATION_METRICS:
        header = "| model | region | on | off | on − off (± sd) | per fold | pairs | Wilcoxon p | t-test p |"
        lines += [f"## {metric}", "", header, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in rows:
            if row["metric"] == metric:
                lines.append(f"| {row['label']} | {row['region']} | {_fmt(row['adversarial_on'])} | "
                             f"{_fmt(row['adversarial_off'])} | {_fmt(row['difference'])} ± "
                             f"{_fmt(row['difference_sd'], 3)} | {row['fold_differences']} | {row['pairs']} | "
                             f"{_p(row['wilcoxon_p'])} | {_p(row['ttest_p'])} |")
        lines.append("")
    lines.append("Paired over held-out cases (the same case under both settings of one model and fold); "
                 "two-sided Wilcoxon signed-rank and paired t-test. 'per fold' = mean difference per fold.")
    return "\n".join(lines) + "\n"


def per_case_rows(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    rows = []
    for run in results:
        for case, regions in run.per_case.items():
            for region in REGIONS:
                rows.append({"model": run.spec.model, "adversarial": "on" if run.spec.adversarial else "off",
                             "fold": run.spec.fold, "case_id": case, "model_version": run.model_version,
                             "region": region, **regions[region]})
    return rows


def curve_rows(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    rows = []
    for run in results:
        for entry in run.history:
            dice = entry.get("val_dice") or {}
            rows.append({"model": run.spec.model, "adversarial": "on" if run.spec.adversarial else "off",
                         "fold": run.spec.fold, "epoch": entry["epoch"], "g_rec": entry["g_rec"],
                         "g_adv": entry["g_adv"], "d_loss": entry["d_loss"],
                         **{f"val_dice_{r}": dice.get(r) for r in REGIONS}, "seconds": entry["seconds"]})
    return rows


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def figure3(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Grouped bars as the paper's Figure 3: per metric (region mean), one bar per model and setting."""
    plt = _pyplot()
    metrics = [m for m, _ in (*TABLE1, *TABLE2)]
    titles = {"accuracy": "Pixel acc.\n(volume)", "accuracy_in_brain": "Pixel acc.\n(brain)", "recall": "Recall",
              "iou": "IoU", "dice": "Dice"}
    bars = list(dict.fromkeys((r["label"], r["adversarial"]) for r in rows))
    lookup = {(r["label"], r["adversarial"], r["metric"]): r for r in rows}
    figure, axis = plt.subplots(figsize=(min(16.0, max(8.0, 0.15 * len(metrics) * len(bars) + 4)), 4.8))
    width = 0.8 / max(len(bars), 1)
    colours = plt.get_cmap("tab10")
    labels = list(dict.fromkeys(label for label, _ in bars))
    for index, (label, adversarial) in enumerate(bars):
        heights = [lookup[(label, adversarial, m)]["mean"] or 0.0 for m in metrics]
        errors = [lookup[(label, adversarial, m)]["mean_sd"] or 0.0 for m in metrics]
        positions = [m + (index - (len(bars) - 1) / 2) * width for m in range(len(metrics))]
        axis.bar(positions, heights, width, yerr=errors, capsize=2, color=colours(labels.index(label) % 10),
                 hatch="" if adversarial == "on" else "//", edgecolor="black", linewidth=0.5,
                 label=f"{label} ({'adversarial' if adversarial == 'on' else 'no adversarial'})")
    axis.set_xticks(range(len(metrics)), [titles[m] for m in metrics])
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("mean over WT, TC, ET (± sd over cases)")
    axis.set_title("Segmentation metrics per model (held-out cases)")
    axis.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save_figure(figure, path)
    plt.close(figure)


def curves_figure(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Training L_rec and validation mean Dice per epoch, one line per model, setting and fold."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colours = plt.get_cmap("tab10")
    for key in dict.fromkeys((r["model"], r["adversarial"], r["fold"]) for r in rows):
        colour = colours(models.index(key[0]) % 10)
        entries = [r for r in rows if (r["model"], r["adversarial"], r["fold"]) == key]
        epochs = [r["epoch"] for r in entries]
        style = "-" if key[1] == "on" else "--"
        name = f"{key[0]} {'adv' if key[1] == 'on' else 'no adv'} f{key[2]}"
        left.plot(epochs, [r["g_rec"] for r in entries], style, color=colour, label=name)
        dice = [statistics.fmean([r[f"val_dice_{g}"] for g in REGIONS]) if r["val_dice_WT"] is not None
                else float("nan") for r in entries]
        right.plot(epochs, dice, style, color=colour, label=name)
    left.set(xlabel="epoch", ylabel="L_rec (BCE + soft Dice)", title="training loss")
    right.set(xlabel="epoch", ylabel="mean Dice (model resolution)", title="held-out Dice per epoch", ylim=(0, 1))
    right.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save_figure(figure, path)
    plt.close(figure)


def _environment() -> dict[str, Any]:
    import numpy
    import torch

    from brainseg_gui import __version__

    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"brainseg": __version__, "git_commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "machine": platform.platform(),
            "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None}


def write_reports(config: ExperimentConfig, results: Sequence[RunResult], seconds: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Every report file in config.out_dir (each written atomically); returns name -> path."""
    out = Path(config.out_dir)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        atomic_write_bytes(out / name, text.encode())
        written[name] = out / name

    table1, table2 = metric_table(results, TABLE1), metric_table(results, TABLE2)
    put("table1.csv", _csv(table1))
    put("table1.md", table_markdown(table1, TABLE1, "Table 1: pixel accuracy and recall"))
    put("table2.csv", _csv(table2))
    put("table2.md", table_markdown(table2, TABLE2, "Table 2: IoU and Dice"))
    ablation = ablation_rows(results)
    put("ablation.csv", _csv(ablation))
    put("ablation.md", ablation_markdown(ablation))
    put("per_case.csv", _csv(per_case_rows(results)))
    curves = curve_rows(results)
    put("curves.csv", _csv(curves))
    figure3([*table1, *table2], out / "figure3.png")
    written["figure3.png"] = out / "figure3.png"
    if curves:
        curves_figure(curves, out / "curves.png")
        written["curves.png"] = out / "curves.png"
    runs = [{"variant": r.spec.variant, "model": r.spec.model, "architecture": _architecture(r.spec.model),
             "adversarial": r.spec.adversarial, "fold": r.spec.fold, "train_cases": list(r.spec.train_cases),
             "test_cases": list(r.spec.test_cases), "model_version": r.model_version, "parameters": r.parameters,
             "seconds_train": r.seconds_train, "seconds_eval": r.seconds_eval,
             "model_dir": str(r.spec.folder(out) / "final")} for r in results]
    cases = sorted({c for r in results for c in (*r.spec.train_cases, *r.spec.test_cases)})
    document = {"experiment": config.to_dict(), "case_ids": cases, "runs": runs,
                "seconds_this_invocation": round(seconds, 1), "seconds_runs": round(sum(r.seconds_train + r.seconds_eval
                                                                               for r in results), 1),
                "environment": _environment(), **(extra or {})}
    put("config.json", json.dumps(document, indent=2) + "\n")
    log.info("reports written to %s", out)
    return written


def _architecture(model: str) -> str:
    from brainseg_gui.ml.experiment import MODELS

    return MODELS[model][0]
