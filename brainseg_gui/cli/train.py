"""`brainseg train`: train the GAN segmenter on labelled cases."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from brainseg_gui.core.output_folder import OutputFolder


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the train command."""
    train = commands.add_parser("train", parents=parents, help="train a generator (adversarially)",
                                description="Train the GAN segmenter on labelled cases.")
    train.add_argument("data", nargs="+", type=path_arg, metavar="DATA_DIR", help="folders of labelled cases")
    train.add_argument("--out", type=path_arg, required=True, metavar="MODEL_DIR", help="where the model is written: a new or empty folder, or an earlier train's")
    train.add_argument("--val", nargs="+", metavar="CASE", help="validation case ids or folders")
    train.add_argument("--val-fraction", type=_fraction, metavar="F",
                       help="share of cases held out for validation when --val/--folds are not given "
                            "(default 0.2; 0 trains on every case)")
    train.add_argument("--folds", type=positive_int, metavar="K", help="case-level K-fold cross-validation")
    train.add_argument("--fold", type=int, metavar="I", help="which fold (0..K-1) is held out")
    add_recipe_options(train)
    train.set_defaults(run=_run_train, live_logs=True)


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The training-recipe options `train` and `crossval` share."""
    parser.add_argument("--epochs", type=common.epochs, metavar="N")
    parser.add_argument("--steps-per-epoch", type=common.steps, metavar="N")
    parser.add_argument("--batch-size", type=common.batch_size, metavar="N",
                        help="patches per step (default 4; the shipped model's GPU run used 16)")
    parser.add_argument("--lambda", dest="lambda_rec", type=positive_float, metavar="L",
                        help="weight of the reconstruction loss against the adversarial one")
    parser.add_argument("--no-adversarial", action="store_true", help="ablation: train G alone (no D)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint(s) in --out")
    parser.add_argument("--force", action="store_true",
                        help="write into an --out folder that holds other files, beside them (none of them "
                             "is deleted or overwritten)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"),
                        help="mixed precision: auto (default) is bf16 on CUDA and on CPUs that compute bf16 natively "
                             "(AVX-512 BF16 or AMX: about half the time a step), fp32 on other CPUs; off: fp32")
    parser.add_argument("--seed", type=common.seed, metavar="N")
    parser.add_argument("--ema", type=_decay, metavar="DECAY",
                        help="also keep a moving average of the generator's weights (e.g. 0.999), validated "
                             "beside it and saved each epoch in MODEL_DIR/ema")
    parser.add_argument("--cache", type=path_arg, metavar="DIR",
                        help="folder for the preprocessed training cache (default: inside --out); "
                             "reuse one across runs to skip preprocessing")


def recipe_from_args(args: argparse.Namespace, **extra: object) -> dict[str, object]:
    """TrainConfig keyword arguments from the shared recipe options (unset ones keep the defaults)."""
    wanted = {
        "data_dirs": list(args.data), "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
        "batch_size": args.batch_size, "lambda_rec": args.lambda_rec, "adversarial": not args.no_adversarial,
        "resume": args.resume, "device": args.device, "seed": args.seed, "cache_dir": args.cache,
        "amp": getattr(args, "amp", None), "ema_decay": args.ema, **extra,
    }
    return {key: value for key, value in wanted.items() if value is not None}


def claim_output(args: argparse.Namespace, command: str, nested: dict[str, str] | None = None) -> OutputFolder:
    """--out claimed for `command` (refused when it holds files the command did not write, unless
    --force, or `nested` output folders of other commands); nothing is created until the command
    writes its first file."""
    from brainseg_gui.core.output_folder import claim

    return claim(args.out, command, force=args.force, resume=args.resume, nested=nested)


def _fraction(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _run_train(args: argparse.Namespace) -> int:
    for path in args.data:
        require_exists(path)
    if (args.folds is None) != (args.fold is None):
        raise UsageError("--folds and --fold go together (e.g. --folds 5 --fold 0)")
    if args.folds is not None and not 0 <= args.fold < args.folds:
        raise UsageError(f"--fold must be between 0 and {args.folds - 1}, got {args.fold}")
    if args.val is not None and args.folds is not None:
        raise UsageError("give either --val or --folds/--fold, not both")

    from brainseg_gui.ml.distributed import env_context
    from brainseg_gui.ml.training import TrainConfig, train

    if args.val_fraction is not None and (args.val is not None or args.folds is not None):
        raise UsageError("--val-fraction applies only without --val and --folds")
    config = TrainConfig(**recipe_from_args(args, out_dir=args.out, val_cases=_case_ids(args.val),
                                            folds=args.folds, fold=args.fold, val_fraction=args.val_fraction))
    if not env_context().is_main:  # under torchrun rank 0 alone reports (and writes); the others train quietly
        train(config)
        return EXIT_OK
    output = claim_output(args, "train")
    with ProgressBar("training") as bar:
        result = train(config, progress=bar, on_epoch=lambda entry: bar.write(entry.message()), output=output)
    card = result.card
    print(f"model {card.version} written to {result.model_dir} (best epoch {result.best_epoch} "
          f"of {len(result.history)})")
    dice = (card.validation or {}).get("dice")
    if dice:
        print("validation Dice: " + ", ".join(f"{region} {value:.3f}" for region, value in dice.items()))
    return EXIT_OK


def _decay(text: str) -> float:
    value = positive_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a decay between 0 and 1 (e.g. 0.999), got {text}")
    return value


def _case_ids(values: list[str] | None) -> list[str] | None:
    """--val takes case ids or case paths; a path stands for the case found there."""
    if values is None:
        return None
    from brainseg_gui.core.io import find_case

    return [find_case(Path(value)).case_id if Path(value).exists() else value for value in values]
