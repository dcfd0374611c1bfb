"""Before/after numbers of a fine-tune: Dice and HD95 per region on the validation cases.

Measured the way a user would meet the model: the real predictor (ml/predictor.py) on each case at
its own resolution, against the case's labels (`crossval.evaluate_model`, core/metrics.py's BraTS
conventions: an empty region on one side scores Dice 0 and HD95 EMPTY_HD95 mm).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainseg_gui.core.cases import CaseFiles
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress


@dataclass(frozen=True)
class RegionScore:
    dice: float
    hd95: float  # mm


@dataclass(frozen=True)
class ValidationMetrics:
    """Per case and mean over cases, per region (WT, TC, ET)."""

    per_case: dict[str, dict[str, RegionScore]]
    mean: dict[str, RegionScore]
    model_version: str = ""

    @property
    def mean_dice(self) -> float:
        return statistics.fmean(score.dice for score in self.mean.values())

    def to_dict(self) -> dict[str, Any]:
        def scores(regions: Mapping[str, RegionScore]) -> dict[str, dict[str, float]]:
            return {r: {"dice": round(s.dice, 4), "hd95": round(s.hd95, 2)} for r, s in regions.items()}

        return {"model_version": self.model_version, "mean": scores(self.mean),
                "per_case": {case: scores(regions) for case, regions in self.per_case.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationMetrics:
        def scores(regions: Mapping[str, Any]) -> dict[str, RegionScore]:
            return {r: RegionScore(float(s["dice"]), float(s["hd95"])) for r, s in regions.items()}

        return cls({case: scores(r) for case, r in data["per_case"].items()}, scores(data["mean"]),
                   str(data.get("model_version", "")))


def summarise(per_case: dict[str, dict[str, RegionScore]], model_version: str = "") -> ValidationMetrics:
    mean = {region: RegionScore(statistics.fmean(c[region].dice for c in per_case.values()),
                                statistics.fmean(c[region].hd95 for c in per_case.values()))
            for region in REGIONS}
    return ValidationMetrics(per_case, mean, model_version)


def evaluate_full(model_dir: Path, cases: Sequence[CaseFiles], *, device: str = "cpu",
                  progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> ValidationMetrics:
    """Predict each case with the model and score Dice and HD95 per region at full resolution."""
    from brainseg_gui.ml.crossval import evaluate_model

    evaluations = evaluate_model(Path(model_dir), list(cases), device=device, lesions=False, progress=progress,
                                 cancel=cancel)
    per_case = {e.case_id: {r: RegionScore(float(e.metrics[r].dice), float(e.metrics[r].hd95)) for r in REGIONS}
                for e in evaluations}
    return summarise(per_case, evaluations[0].model_version if evaluations else "")


def comparison_rows(before: ValidationMetrics, after: ValidationMetrics) -> list[tuple[str, float, float, float, float]]:
    """(region, Dice before, Dice after, HD95 before, HD95 after) per region, means over cases."""
    return [(r, before.mean[r].dice, after.mean[r].dice, before.mean[r].hd95, after.mean[r].hd95) for r in REGIONS]


def format_comparison(before: ValidationMetrics | None, after: ValidationMetrics | None) -> str:
    """The plain-text before/after table the CLI prints (means over the validation cases)."""
    if before is None or after is None:
        return "(no before/after evaluation was run)"
    lines = ["Region  Dice before  Dice after   change  HD95 before  HD95 after   change",
             "------  -----------  ----------  -------  -----------  ----------  -------"]
    for region, d0, d1, h0, h1 in comparison_rows(before, after):
        lines.append(f"{region:<6}  {d0:11.4f}  {d1:10.4f}  {d1 - d0:+7.4f}  {h0:11.2f}  {h1:10.2f}  "
                     f"{_signed(h1 - h0)}")
    lines.append(f"mean    {before.mean_dice:11.4f}  {after.mean_dice:10.4f}  {after.mean_dice - before.mean_dice:+7.4f}")
    lines.append(f"{len(after.per_case)} validation case(s), full resolution; HD95 in mm (lower is better).")
    return "\n".join(lines)


def _signed(value: float) -> str:
    return f"{value:+7.2f}" if math.isfinite(value) else "    n/a"
