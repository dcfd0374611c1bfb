"""`brainseg finetune`: adapt a model to a site's own annotated cases, with a before/after table.

Runs the same code as the GUI's fine-tune panel (ml/finetune.py). The new model is written to
--out; --keep also adds it to the user's models folder and makes it the active model. Under
`torchrun --nproc-per-node N -m brainseg_gui finetune ...` the training runs on N processes and
rank 0 alone prints, evaluates and writes.
"""

from __future__ import annotations

import argparse

from brainseg_gui.cli import common
from brainseg_gui.cli.common import (
    DEVICES,
    EXIT_OK,
    ProgressBar,
    path_arg,
    positive_float,
    require_exists,
)


def register(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the finetune command."""
    p = commands.add_parser(
        "finetune", parents=parents, help="fine-tune a model on your own annotated cases",
        description="Fine-tune a model (default: the active one) on labelled cases, validate on held-apart "
                    "cases, and print Dice and HD95 per region before and after. The model in use is not "
                    "changed unless --keep is given.")
    p.add_argument("cases", nargs="+", type=path_arg, metavar="CASE",
                   help="training cases: case folders, files of a case, or folders of cases")
    p.add_argument("--val", nargs="+", type=path_arg, required=True, metavar="CASE",
                   help="validation cases, held apart from training (no case or patient on both sides)")
    p.add_argument("--out", type=path_arg, required=True, metavar="MODEL_DIR",
                   help="where the new model is written: a new or empty folder, or an earlier fine-tune's")
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that holds other files, beside them (none of them is "
                        "deleted or overwritten)")
    p.add_argument("--base", type=path_arg, metavar="MODEL_DIR", help="model to start from (default: the active model)")
    p.add_argument("--epochs", type=common.epochs, metavar="N", help="most epochs (default 20; early stopping)")
    p.add_argument("--lr", type=positive_float, metavar="LR", help="learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=common.batch_size, metavar="N", help="patches per step (default 16)")
    p.add_argument("--lambda", dest="lambda_rec", type=positive_float, metavar="L",
                   help="weight of the reconstruction loss against the adversarial one (default 20)")
    p.add_argument("--patience", type=int, metavar="N",
                   help="stop after N epochs without a better validation Dice (default 4; 0 never)")
    p.add_argument("--steps-per-epoch", type=common.steps, metavar="N",
                   help="training steps per epoch (default: 16 patches per training case)")
    p.add_argument("--patch-size", type=common.patch_size, metavar="N", help="training patch edge in voxels (default 64)")
    p.add_argument("--no-adversarial", action="store_true", help="train without the discriminator")
    p.add_argument("--no-augment", action="store_true", help="no data augmentation")
    p.add_argument("--no-evaluate", action="store_true", help="skip the before/after evaluation")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--amp", choices=("auto", "bf16", "off"),
                   help="precision: auto (default) is bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere")
    p.add_argument("--seed", type=common.seed, metavar="N")
    p.add_argument("--keep", action="store_true",
                   help="add the new model to your models folder and make it the active model")
    p.add_argument("--note", default="", metavar="TEXT", help="a note stored with the kept model")
    p.set_defaults(run=_run_finetune, live_logs=True)


def _settings(args: argparse.Namespace):  # -> FinetuneSettings
    from brainseg_gui.ml.finetune import FinetuneSettings

    given = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "lambda_rec": args.lambda_rec,
             "patience": args.patience, "steps_per_epoch": args.steps_per_epoch, "patch_size": args.patch_size,
             "seed": args.seed, "device": args.device, "amp": args.amp}
    settings = FinetuneSettings(**{key: value for key, value in given.items() if value is not None})
    settings.adversarial = not args.no_adversarial
    settings.augment = not args.no_augment
    settings.evaluate = not args.no_evaluate
    return settings


def _run_finetune(args: argparse.Namespace) -> int:
    for path in [*args.cases, *args.val, *([args.base] if args.base else [])]:
        require_exists(path)

    from brainseg_gui.ml import distributed
    from brainseg_gui.ml.finetune import EpochDone, Evaluated, FinetuneEvent, Notice, Started, finetune

    main = distributed.env_context().is_main
    try:
        with ProgressBar("fine-tuning") as bar:
            def show(event: FinetuneEvent) -> None:
                if not main:
                    return
                if isinstance(event, Started):
                    bar.write(f"fine-tuning model {event.base_version} on {len(event.train_cases)} case(s), "
                              f"validating on {len(event.val_cases)}; {event.device}; up to {event.epochs} "
                              f"epochs of {event.steps_per_epoch} step(s)")
                elif isinstance(event, EpochDone):
                    dice = " ".join(f"{r} {v:.3f}" for r, v in event.val_dice.items())
                    bar.write(f"epoch {event.epoch}/{event.epochs}  G {event.g_loss:.3f}  D {event.d_loss:.3f}  "
                              f"val Dice {dice}{'  (best)' if event.best else ''}  {event.seconds:.0f} s")
                elif isinstance(event, Evaluated):
                    dice = " ".join(f"{r} {s.dice:.3f}" for r, s in event.metrics.mean.items())
                    bar.write(f"{event.stage}: Dice {dice}")
                elif isinstance(event, Notice):
                    bar.write(f"{'warning' if event.kind in ('collapse', 'few_cases') else 'note'}: {event.text}")

            result = finetune(args.cases, args.val, args.out, base_model=args.base, settings=_settings(args),
                              progress=bar if main else _quiet, on_event=show, force=args.force)
        if not main:
            return EXIT_OK
        print(result.table())
        print(f"new model {result.card.version} (epoch {result.saved_epoch} of {len(result.history)}"
              f"{', stopped early' if result.stopped_early else ''}) written to {result.model_dir}; "
              f"base model {result.base_version}")
        if args.keep:
            from brainseg_gui.ml.model_registry import ModelRegistry

            if result.before is not None and not result.improved():
                print("warning: the new model is not better on the validation cases; kept as asked")
            entry = ModelRegistry().keep(result.model_dir, note=args.note)
            print(f"kept as {entry.name} in {entry.directory.parent}; it is now the active model "
                  "(roll back with `brainseg models rollback`)")
        return EXIT_OK
    finally:
        distributed.shutdown()


def _quiet(fraction: float, message: str) -> None:
    """Progress of the ranks that do not print."""
