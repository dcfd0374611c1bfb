"""`brainseg experiment`: the paper's comparison (FCN-8s, SegNet, U-Net, DeepLab v1/v2, ours), rerun."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from brainseg_gui.cli import common
from brainseg_gui.cli.common import (
    DEVICES,
    EXIT_OK,
    ProgressBar,
    UsageError,
    path_arg,
    positive_float,
    positive_int,
    require_exists,
)

#: Mirror brainseg_gui.ml.experiment (MODELS, ExperimentConfig defaults), so `--help` imports no torch
#: or numpy; tests/test_cli_experiment.py checks they agree.
MODEL_NAMES = ("fcn", "segnet", "unet", "deeplabv1", "deeplabv2", "ours")
LR_SCHEDULES = ("poly", "constant")
DEFAULT_EPOCHS, DEFAULT_STEPS_PER_EPOCH = 50, 40


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the experiment command."""
    p = commands.add_parser(
        "experiment", parents=parents, help="rerun the paper's comparison: baselines vs ours, with/without GAN",
        description="Train and score every chosen network under one recipe on a case-level split (or K folds), "
                    "with and/or without the adversarial term, and write table1/table2 (.csv, .md), "
                    "figure3.png, ablation (.csv, .md), per_case.csv, curves (.csv, .png) and config.json "
                    "to --out. Interrupted? Run the same command again: finished runs are kept, unfinished "
                    "ones resume from their last epoch. Defaults are a CPU-sized schedule "
                    "(docs/paper-comparison.md).")
    p.add_argument("data", nargs="*", type=path_arg, metavar="DATA_DIR", help="folders of labelled cases")
    p.add_argument("--out", type=path_arg, metavar="RESULTS_DIR", help="where runs and reports go: a new or empty folder, or an earlier experiment's")
    p.add_argument("--models", type=_models, default=list(MODEL_NAMES), metavar="LIST",
                   help=f"comma-separated, from {','.join(MODEL_NAMES)} (default: all)")
    p.add_argument("--adversarial", choices=("both", "on", "off"), default="both",
                   help="train each model with the adversarial term, without it, or both (default; the ablation)")
    p.add_argument("--folds", type=positive_int, metavar="K",
                   help="K-fold cross-validation (default: one split holding out --test-fraction of the patients)")
    p.add_argument("--test-fraction", type=_fraction, default=0.25, metavar="F",
                   help="share of patients held out when --folds is not given (default 0.25)")
    p.add_argument("--epochs", type=common.epochs, metavar="N", help=f"epochs a run (default {DEFAULT_EPOCHS})")
    p.add_argument("--steps-per-epoch", type=common.steps, metavar="N",
                   help=f"Adam steps an epoch (default {DEFAULT_STEPS_PER_EPOCH})")
    p.add_argument("--batch-size", type=common.batch_size, metavar="N", help="patches per step (default 4; the paper's 16)")
    p.add_argument("--lr", type=positive_float, metavar="LR",
                   help="Adam learning rate (default 1e-3; the paper's 1e-4 does not reach a plateau on this budget)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="poly (default: lr * (1 - progress)^0.9) or constant (the paper's)")
    p.add_argument("--patch-size", type=common.patch_size, metavar="N", help="cubic patch side, a multiple of 32")
    p.add_argument("--resolution", type=common.resolution_mm, metavar="MM", help="isotropic training resolution in mm")
    p.add_argument("--width-scale", type=common.width_scale, metavar="S",
                   help="multiply every network's widths by S (default 0.5; 1 = the full-size networks)")
    p.add_argument("--seed", type=common.seed, metavar="N")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--amp", choices=("off", "auto", "bf16"),
                   help="precision of every run: off (default) is fp32 for all networks, one recipe; auto is bf16 "
                        "on a GPU, and on a CPU only for networks where CPU bf16 is safe (FCN-8s and U-Net at "
                        "32^3 stay fp32)")
    p.add_argument("--output-prior", type=_fraction, metavar="P",
                   help="every network's outputs start at probability P (default 0.01; the prior-probability "
                        "bias init, docs/paper-comparison.md)")
    p.add_argument("--force", action="store_true",
                   help="write into a --out folder that holds other files, beside them (none of them is "
                        "deleted or overwritten)")
    p.add_argument("--list-models", action="store_true",
                   help="print each network's parameter count and padding divisor, then exit")
    p.set_defaults(run=_run_experiment, live_logs=True)


def _models(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown models {unknown or text!r}; choose from {','.join(MODEL_NAMES)}")
    return list(dict.fromkeys(names))


def _fraction(text: str) -> float:
    value = positive_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text}")
    return value


def _config_from_args(args: argparse.Namespace) -> Any:
    from brainseg_gui.ml.experiment import ExperimentConfig

    values = {"data_dirs": list(args.data), "out_dir": args.out, "models": args.models,
              "adversarial": args.adversarial, "folds": args.folds or 0, "val_fraction": args.test_fraction,
              "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size,
              "lr": args.lr, "patch_size": args.patch_size, "resolution_mm": args.resolution,
              "width_scale": args.width_scale, "seed": args.seed, "device": args.device, "amp": args.amp,
              "output_prior": args.output_prior, "lr_schedule": args.lr_schedule}
    return ExperimentConfig(**{key: value for key, value in values.items() if value is not None})


def _list_models(scale: float) -> int:
    from brainseg_gui.ml.experiment import MODELS, scaled_config
    from brainseg_gui.ml.networks import build_generator, divisor, parameter_count

    print(f"{'model':<10} {'architecture':<12} {'parameters':>10}  divisor  (width scale {scale:g})")
    for name, (architecture, label) in MODELS.items():
        config = scaled_config(architecture, scale)
        count = parameter_count(build_generator(architecture, config))
        print(f"{name:<10} {architecture:<12} {count:>10,}  {divisor(config):>7}  {label}")
    return EXIT_OK


def _run_experiment(args: argparse.Namespace) -> int:
    if args.list_models:
        return _list_models(args.width_scale if args.width_scale is not None else 0.5)
    if not args.data:
        raise UsageError("give at least one DATA_DIR (see 'brainseg experiment --help')")
    if args.out is None:
        raise UsageError("--out RESULTS_DIR is required")
    for path in args.data:
        require_exists(path)
    if args.folds == 1:
        raise UsageError("--folds must be at least 2 (or leave it out for one split)")

    from brainseg_gui.core.output_folder import claim
    from brainseg_gui.ml.experiment import MODELS, REPORT_FILES, run_experiment, scaled_config
    from brainseg_gui.ml.networks import build_generator, parameter_count

    config = _config_from_args(args)
    config.check()
    output = claim(args.out, "experiment", force=args.force)
    for name in config.models:
        architecture, label = MODELS[name]
        count = parameter_count(build_generator(architecture, scaled_config(architecture, config.width_scale)))
        print(f"{label}: {architecture}, {count:,} parameters")
    bars: list[ProgressBar] = []

    def on_run(spec: Any, index: int, total: int) -> ProgressBar:
        if bars:
            bars.pop().__exit__(None, None, None)
        bar = ProgressBar(f"[{index + 1}/{total}] {spec.label}")
        bars.append(bar)
        return bar

    try:
        run_experiment(config, on_run=on_run, output=output)
    finally:
        while bars:
            bars.pop().__exit__(None, None, None)
    out = Path(config.out_dir)
    sys.stdout.write((out / "table2.md").read_text())
    print("written: " + ", ".join(str(out / name) for name in REPORT_FILES if (out / name).is_file()))
    return EXIT_OK
