"""`brainseg crossval`: case-level K-fold cross-validation, scored at the cases' full resolution."""

from __future__ import annotations

import argparse

from brainseg_gui.cli.common import EXIT_OK, ProgressBar, path_arg, positive_int, require_exists
from brainseg_gui.cli.train import add_recipe_options, claim_output, recipe_from_args


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the crossval command."""
    crossval = commands.add_parser(
        "crossval", parents=parents, help="K-fold cross-validation: train each fold, score the held-out cases",
        description="Train one model per fold into OUT/fold<i> (cases of one patient stay in one fold), "
                    "predict each fold's held-out cases with it at full resolution and write "
                    "OUT/per_case.csv, OUT/summary.json and OUT/summary.md. Folds already trained are reused.")
    crossval.add_argument("data", nargs="+", type=path_arg, metavar="DATA_DIR", help="folders of labelled cases")
    crossval.add_argument("--out", type=path_arg, required=True, metavar="DIR", help="where folds and reports go: a new or empty folder, or an earlier "
                               "crossval's")
    crossval.add_argument("--folds", type=positive_int, default=4, metavar="K", help="number of folds (default 4)")
    crossval.add_argument("--evaluate-only", action="store_true",
                          help="train nothing: score the folds already in --out (missing ones are skipped "
                               "with a warning)")
    crossval.add_argument("--earlier", type=path_arg, metavar="CSV",
                          help="an earlier run's per_case.csv: the figures of folds that have no model in --out "
                               "(trained in another session or on another machine) are taken from it")
    crossval.add_argument("--tta", action="store_true", help="test-time augmentation when scoring")
    crossval.add_argument("--weights", choices=("best", "last", "ema"), default="best",
                          help="what each fold is scored by: best, the epoch of best validation Dice (picked "
                               "on the held-out cases themselves: it flatters); last, the latest epoch; ema, "
                               "the moving average (folds trained with --ema). last and ema are what a model "
                               "trained on every case delivers (default best)")
    add_recipe_options(crossval)
    crossval.set_defaults(run=_run_crossval, live_logs=True)


def _run_crossval(args: argparse.Namespace) -> int:
    for path in args.data:
        require_exists(path)
    from brainseg_gui.ml.crossval import read_per_case, run_crossval, summary_markdown
    from brainseg_gui.ml.device import select_device
    from brainseg_gui.ml.training import TrainConfig

    earlier = read_per_case(args.earlier) if args.earlier is not None else []
    template = TrainConfig(**recipe_from_args(args, out_dir=args.out))
    device = str(select_device(args.device))
    # folds trained one by one with `brainseg train --folds K --fold k --out OUT/fold<k>` are its own
    output = claim_output(args, "crossval", nested={f"fold{fold}": "train" for fold in range(args.folds)})
    with ProgressBar("cross-validation") as bar:
        evaluations = run_crossval(template, args.folds, args.out, train_missing=not args.evaluate_only,
                                   device=device, tta=args.tta, progress=bar, output=output, earlier=earlier,
                                   weights=args.weights)
    print(summary_markdown(evaluations))
    print(f"written: {args.out / 'per_case.csv'}, {args.out / 'summary.json'}, {args.out / 'summary.md'}")
    return EXIT_OK
