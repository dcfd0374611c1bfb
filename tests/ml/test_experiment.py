"""The experiment's planning and statistics, without training (the CLI test runs the whole thing)."""

from __future__ import annotations

import pytest
from scipy import stats

from brainseg_gui.ml.experiment import (
    MODELS,
    ExperimentConfig,
    ExperimentError,
    RunResult,
    RunSpec,
    plan_runs,
    scaled_config,
    train_config,
)
from brainseg_gui.ml.experiment_report import ablation_rows, metric_table, paired_test

CASES = [f"case{i:02d}" for i in range(8)]


def test_scaled_config_multiplies_every_width() -> None:
    assert scaled_config("generator3d", 0.5)["widths"] == [8, 16, 32, 64]
    assert scaled_config("generator3d", 0.5)["deep_supervision"] is True
    deeplab = scaled_config("deeplabv1", 0.5)
    assert deeplab["widths"] == [8, 16, 32, 48] and deeplab["fc_width"] == 48 and deeplab["fov_dilation"] == 4
    assert scaled_config("fcn8s", 1.0)["widths"] == [16, 32, 64, 96, 112, 112]


def test_folds_partition_the_cases_and_every_model_runs_both_ways() -> None:
    config = ExperimentConfig(models=["unet", "ours"], folds=2)
    runs = plan_runs(config, CASES)
    assert len(runs) == 2 * 2 * 2
    assert [(r.model, r.adversarial) for r in runs[:4]] == [("unet", False), ("unet", True),
                                                            ("ours", False), ("ours", True)]
    tested = sorted(c for r in runs if r.model == "ours" and r.adversarial for c in r.test_cases)
    assert tested == CASES
    for run in runs:
        assert not set(run.train_cases) & set(run.test_cases)
    single = plan_runs(ExperimentConfig(models=["fcn"], adversarial="on", val_fraction=0.25), CASES)
    assert len(single) == 1 and len(single[0].test_cases) == 2 and single[0].adversarial
    # one precision for every network: fp32 unless asked (CPU bf16 would skip FCN-8s and U-Net at 32^3)
    assert {train_config(config, run).amp for run in runs} == {"off"}
    assert train_config(ExperimentConfig(amp="auto"), runs[0]).amp == "auto"
    assert {train_config(config, run).output_prior for run in runs} == {0.01}  # every network starts at "no tumour"


@pytest.mark.parametrize("changes, message", [
    ({"models": ["vgg"]}, "unknown models"), ({"adversarial": "maybe"}, "adversarial must be"),
    ({"folds": 1}, "folds must be"), ({"patch_size": 48}, "multiple of 32"), ({"width_scale": 0.0}, "width_scale"),
    ({"batch_size": 1}, "batch_size must be at least 2"), ({"amp": "fp8"}, "amp must be"),
    ({"output_prior": 0.0}, "output_prior must be"), ({"lr_schedule": "cosine"}, "lr_schedule must be"),
])
def test_bad_settings_are_refused(changes, message) -> None:
    with pytest.raises(ExperimentError, match=message):
        ExperimentConfig(**changes).check()


def test_paired_test_matches_scipy_and_handles_degenerate_pairs() -> None:
    on, off = [0.8, 0.7, 0.9, 0.6, 0.75], [0.7, 0.72, 0.8, 0.5, 0.7]
    result = paired_test(on, off)
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(on, off).pvalue)
    assert result["ttest_p"] == pytest.approx(stats.ttest_rel(on, off).pvalue)
    assert paired_test([0.5, 0.6], [0.5, 0.6]) == {"wilcoxon_p": 1.0, "ttest_p": 1.0}
    assert paired_test([0.5], [0.4]) == {"wilcoxon_p": None, "ttest_p": None}


def _result(model: str, adversarial: bool, dice: dict[str, float]) -> RunResult:
    spec = RunSpec(model, adversarial, 0, ("a", "b"), tuple(dice))
    per_case = {case: {region: {"dice": value * scale, "iou": value * scale / 2}
                       for region, scale in (("WT", 1.0), ("TC", 0.8), ("ET", 0.5))}
                for case, value in dice.items()}
    return RunResult(spec, "0" * 12, 10, per_case, [], 1.0, 1.0)


def test_tables_and_ablation_from_known_per_case_values() -> None:
    results = [_result("ours", False, {"x": 0.6, "y": 0.8}), _result("ours", True, {"x": 0.7, "y": 1.0}),
               _result("fcn", True, {"x": 0.5, "y": 0.5})]
    rows = {(r["model"], r["adversarial"]): r for r in metric_table(results, [("dice", "Dice")])}
    assert rows[("ours", "off")]["WT"] == pytest.approx(0.7)
    assert rows[("ours", "on")]["ET"] == pytest.approx(0.425)
    assert rows[("ours", "on")]["mean"] == pytest.approx((0.85 + 0.68 + 0.425) / 3)
    assert rows[("fcn", "on")]["WT_sd"] == 0.0 and rows[("fcn", "on")]["label"] == MODELS["fcn"][1]
    ablation = [r for r in ablation_rows(results) if r["metric"] == "dice"]
    assert {r["model"] for r in ablation} == {"ours"}  # fcn ran one way only
    wt = next(r for r in ablation if r["region"] == "WT")
    assert wt["difference"] == pytest.approx(0.15) and wt["pairs"] == 2 and wt["fold_differences"] == "+0.1500"
