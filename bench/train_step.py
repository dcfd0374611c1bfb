"""One training step of the shipped recipe against the CPU recipe, on real cached cases, in one run.

    python bench/train_step.py [--cases 3] [--repeat 3] [--threads 2] [--cache DIR]

A step here is what `brainseg train` does per step: draw and augment a batch of patches from the
cache (ml/sampling.py) and update D and G (ml/training._step, channels_last_3d). Timed, each the
median of `--repeat` steps after one warm-up step, on the same cached cases:

  shipped   batch 16 x 64^3, fp32             (the recipe of the shipped model, trained on a GPU)
  bf16      batch 16 x 64^3, bf16 autocast    (one change alone: the precision)
  batch 4   batch  4 x 64^3, fp32             (one change alone: the batch)
  cpu       TrainConfig's defaults             (what `brainseg train` runs now)

Prints seconds per step and per patch, and both as a ratio to the shipped recipe's (issue 22's goal:
step ratio <= 0.2). Per patch is the fair measure of a change that only splits the work into more,
smaller steps; which recipe learns more in the same wall time is measured by training, not here.
Measured and not kept (model/README.md, "Training on a CPU"): torch.compile (4 % a step, 54 s to compile),
48^3 patches (less context). The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from brainseg_gui.ml.dataset import build_cache, load_cache
from brainseg_gui.ml.networks import build_discriminator, build_generator
from brainseg_gui.ml.precision import precision_name
from brainseg_gui.ml.sampling import AugmentConfig, PatchSampler
from brainseg_gui.ml.training import TrainConfig, _step, run_precision

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _cases(count: int) -> list[Path]:
    folders = [case for collection in ("brats2018", "brats2021") if (DATA / collection).is_dir()
               for case in sorted((DATA / collection).iterdir()) if case.is_dir()]
    if not folders:
        raise SystemExit(f"no BraTS cases under {DATA}")
    return folders[:count]


def _time_recipe(cases, config: TrainConfig, repeat: int) -> tuple[float, str]:
    """Median seconds of one sampled-and-trained step under `config` (after a warm-up step), and its precision."""
    torch.manual_seed(0)
    generator = build_generator(config.architecture, config.network).to(memory_format=torch.channels_last_3d)
    discriminator = build_discriminator(config.discriminator).to(memory_format=torch.channels_last_3d)
    amp = run_precision(config, config.architecture, config.network, torch.device("cpu"))
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    sampler = PatchSampler(cases, config.patch_size, config.batch_size,
                           augment=AugmentConfig(modality_dropout=config.modality_dropout), seed=0)
    seconds = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        image, target = sampler.sample()
        _step(generator, discriminator, opt_g, opt_d, scaler, image, target, config, amp)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:]), precision_name(amp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="real cases to cache and sample from")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="a training cache folder to reuse (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as scratch:
        cache = args.cache or Path(scratch)
        cases = load_cache(build_cache(_cases(args.cases), cache, TrainConfig().resolution_mm))
    default = TrainConfig()
    recipes = {
        "shipped": TrainConfig(batch_size=16, patch_size=64, amp="off"),
        "bf16": TrainConfig(batch_size=16, patch_size=64, amp="bf16"),
        "batch 4": TrainConfig(batch_size=4, patch_size=64, amp="off"),
        "cpu": default,
    }
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} threads, {len(cases)} cached cases, "
          f"load average {load:.1f} at the start")
    print(f"{'recipe':<8} {'batch':>5} {'patch':>5} {'precision':>9} {'s/step':>7} {'s/patch':>8} "
          f"{'step ratio':>10} {'patch ratio':>11}")
    reference = None
    for name, config in recipes.items():
        seconds, precision = _time_recipe(cases, config, args.repeat)
        per_patch = seconds / config.batch_size
        if reference is None:
            reference = (seconds, per_patch)
        print(f"{name:<8} {config.batch_size:>5} {config.patch_size:>5} {precision:>9} {seconds:>7.2f} "
              f"{per_patch:>8.3f} {seconds / reference[0]:>10.2f} {per_patch / reference[1]:>11.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; goal: the cpu recipe's step ratio <= 0.2")


if __name__ == "__main__":
    main()
