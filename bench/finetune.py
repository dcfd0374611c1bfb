"""Fine-tuning cost and effect on this machine: one epoch on two real cases, Dice before/after, per recipe.

    python bench/finetune.py [--epochs 3] [--precisions off,auto] [--train CASE ...] [--val CASE ...]
                             [--device cpu] [--batch-size 16] [--patch-size 64] [--patches-per-case N]

Fine-tunes the shipped model (ml/shipped.default_model_dir()) with ml/finetune.py's defaults on two
real cases the shipped model never trained on (by default two of its four held-out cases) and
validates on the other two, once per precision in `--precisions`: `off` is the recipe before
issue 22 (fp32 on the CPU), `auto` the panel's default now (bf16 where the CPU computes it natively).
Prints, per epoch, the seconds (training steps + the per-epoch validation at the model's resolution)
and the losses; per recipe the before/after table (Dice and HD95 per region, real predictor, full
resolution); then one line per recipe: mean epoch time (target <= 40 s on the 2-core CPU) and the
Dice lift per region, so the two are compared in the same run on the same cases.
The machine may be shared: the load average at the start and the end is printed with the figures.
Nothing is kept in the user's models folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
#: Two of the shipped model's held-out cases to fine-tune on, and the other two to validate on.
TRAIN = ("brats2021/BraTS2021_00014", "brats2018/Brats18_2013_2_1")
VAL = ("brats2021/BraTS2021_00019", "brats2018/Brats18_TCIA03_265_1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precisions", default="off,auto",
                        help="comma-separated FinetuneSettings.amp values, one run each (default: off,auto)")
    parser.add_argument("--train", nargs="+", type=Path, default=[DATA / c for c in TRAIN])
    parser.add_argument("--val", nargs="+", type=Path, default=[DATA / c for c in VAL])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--patch-size", type=int)
    parser.add_argument("--patches-per-case", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from brainseg_gui.ml.shipped import default_model_dir

    print(f"base model: {default_model_dir()}")
    print(f"train: {[p.name for p in args.train]}  validate: {[p.name for p in args.val]}")
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.1f} (1 min), {load_start[1]:.1f} (5 min); {os.cpu_count()} CPUs")
    summaries = [_run(args, precision) for precision in args.precisions.split(",")]
    print()
    print(f"load average at end {os.getloadavg()[0]:.1f} (1 min); the recipes side by side (same cases, same run):")
    for line in summaries:
        print(line)
    return 0


def _run(args: argparse.Namespace, precision: str) -> str:
    """Fine-tune once with `precision`; print its epochs and table; return its one-line summary."""
    from brainseg_gui.ml.finetune import EpochDone, Evaluated, FinetuneSettings, Notice, Started, finetune
    from brainseg_gui.ml.shipped import default_model_dir

    settings = FinetuneSettings(epochs=args.epochs, device=args.device, patience=0, amp=precision)
    for name in ("batch_size", "patch_size", "patches_per_case"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    print(f"\n== precision {precision}: settings {settings.to_dict()}")
    epochs: list[EpochDone] = []
    cpu_seconds: list[float] = []  # process CPU time per epoch: what an idle machine would need, x cores
    clock = [time.process_time()]

    def show(event: object) -> None:
        if isinstance(event, Started):
            print(f"device: {event.device}; {event.steps_per_epoch} step(s) of {settings.batch_size} patches a "
                  f"epoch; base validation Dice (model resolution) {event.base_val_dice}", flush=True)
        elif isinstance(event, EpochDone):
            epochs.append(event)
            cpu_seconds.append(time.process_time() - clock[0])
            clock[0] = time.process_time()
            print(f"epoch {event.epoch}/{event.epochs}: {event.seconds:.1f} s ({cpu_seconds[-1]:.0f} CPU s)  "
                  f"G {event.g_loss:.3f} (rec {event.g_rec:.3f} adv {event.g_adv:.3f})  D {event.d_loss:.3f}  "
                  f"val Dice {event.val_dice}", flush=True)
        elif isinstance(event, Evaluated):
            clock[0] = time.process_time()
            print(f"{event.stage}: " + ", ".join(f"{r} Dice {s.dice:.4f} HD95 {s.hd95:.2f}"
                                                 for r, s in event.metrics.mean.items()), flush=True)
        elif isinstance(event, Notice):
            print(f"notice ({event.kind}): {event.text}", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as scratch:
        os.environ.setdefault("BRAINSEG_MODELS_DIR", str(Path(scratch) / "models"))  # never touch the user's
        result = finetune(args.train, args.val, Path(scratch) / "run", base_model=default_model_dir(),
                          settings=settings, on_event=show)
    total = time.perf_counter() - started
    seconds = [e.seconds for e in epochs]
    mean = statistics.fmean(seconds)
    print(f"one epoch on {len(args.train)} real cases ({result.device}): mean {mean:.1f} s over {len(seconds)} "
          f"epochs (first {seconds[0]:.1f} s, min {min(seconds):.1f} s, max {max(seconds):.1f} s); target <= 40 s")
    cores = len(os.sched_getaffinity(0))
    print(f"CPU time per epoch: mean {statistics.fmean(cpu_seconds):.0f} s, i.e. about "
          f"{statistics.fmean(cpu_seconds) / cores:.0f} s of wall time on {cores} idle cores")
    print(f"whole run (caching, before/after evaluation included): {total:.0f} s")
    print(result.table())
    lift = ""
    if result.before and result.after:
        print("per case, Dice WT/TC/ET before -> after:")
        for case in result.after.per_case:
            b, a = result.before.per_case[case], result.after.per_case[case]
            print(f"  {case}: " + "  ".join(f"{r} {b[r].dice:.3f} -> {a[r].dice:.3f}" for r in a))
        lift = "  ".join(f"{region} {result.after.mean[region].dice - result.before.mean[region].dice:+.4f}"
                         for region in result.after.mean)
    return f"  precision {precision:<5} epoch {mean:5.1f} s (mean of {len(seconds)})  Dice lift {lift}"


if __name__ == "__main__":
    sys.exit(main())
