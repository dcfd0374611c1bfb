"""The six networks of `brainseg experiment`: parameters, padding divisor and one training step's time.

    python bench/experiment_models.py [--width-scale 0.5] [--batch 4] [--patch 32] [--threads 2] [--repeat 2]
                                      [--models fcn,...,ours]

`--models ours --width-scale 1 --patch 64` times one step of the shipped model's recipe; `--amp` adds the
same G+D step under bf16 autocast and its ratio to fp32 (the CPU path of `brainseg train --amp bf16`).

Prints one line per model: parameters, divisor, the best of `--repeat` G steps (forward, L_rec,
backward, Adam) on a random (batch, 4, patch^3) input, and the step with the discriminator too (the
adversarial setting), both in channels_last_3d as training runs them, so the experiment's wall time
can be estimated as steps x (sum of the step times) + evaluation. The last column is the G+D step in
channels_last_3d over the same step in the default (contiguous) layout, measured in the same run:
why training uses channels_last_3d on the CPU too. The time a step takes on a shared machine varies.
"""

from __future__ import annotations

import argparse
import time

import torch

from brainseg_gui.ml import losses
from brainseg_gui.ml.experiment import MODELS, scaled_config
from brainseg_gui.ml.networks import build_discriminator, build_generator, divisor, parameter_count


def _step_seconds(architecture: str, config: dict, batch: int, patch: int, adversarial: bool, repeat: int,
                  memory_format: torch.memory_format = torch.contiguous_format, bf16: bool = False) -> float:
    generator = build_generator(architecture, config).to(memory_format=memory_format)
    discriminator = build_discriminator().to(memory_format=memory_format)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    image = torch.randn(batch, 4, patch, patch, patch).contiguous(memory_format=memory_format)
    target = (torch.rand(batch, 3, patch, patch, patch) > 0.8).float().contiguous(memory_format=memory_format)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = generator(image)
        logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        loss = losses.deep_supervision_loss(outputs, target, dice=True)
        if adversarial:
            fake = torch.sigmoid(logits.float())
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                d_real, d_fake = discriminator(image, target), discriminator(image, fake.detach())
            d_loss = losses.discriminator_loss(d_real, d_fake)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                adversarial_loss = losses.adversarial_generator_loss(discriminator(image, fake))
            loss = adversarial_loss + 20.0 * loss
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width-scale", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=4, help="patches a step (the experiment's default)")
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all six)")
    parser.add_argument("--amp", action="store_true",
                        help="also time the G+D step under bf16 autocast (as `brainseg train --amp bf16`) and print "
                             "its ratio to the fp32 step of the same run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"width scale {args.width_scale}, batch {args.batch} x {args.patch}^3, {args.threads} threads, "
          f"torch {torch.__version__}")
    print(f"{'model':<10} {'parameters':>10} {'divisor':>7} {'step s':>7} {'step+D s':>8} {'cl/contig':>9}"
          + (f" {'bf16+D s':>8} {'bf16/fp32':>9}" if args.amp else ""))
    totals = [0.0, 0.0]
    channels_last = torch.channels_last_3d
    for name in args.models.split(","):
        architecture = MODELS[name][0]
        config = scaled_config(architecture, args.width_scale)
        count = parameter_count(build_generator(architecture, config))
        plain = _step_seconds(architecture, config, args.batch, args.patch, False, args.repeat, channels_last)
        with_d = _step_seconds(architecture, config, args.batch, args.patch, True, args.repeat, channels_last)
        contiguous = _step_seconds(architecture, config, args.batch, args.patch, True, args.repeat)
        totals[0] += plain
        totals[1] += with_d
        extra = ""
        if args.amp:
            bf16 = _step_seconds(architecture, config, args.batch, args.patch, True, args.repeat, channels_last, True)
            extra = f" {bf16:>8.2f} {bf16 / with_d:>9.2f}"
        print(f"{name:<10} {count:>10,} {divisor(config):>7} {plain:>7.2f} {with_d:>8.2f} {with_d / contiguous:>9.2f}"
              + extra, flush=True)
    print(f"{'total':<10} {'':>10} {'':>7} {totals[0]:>7.2f} {totals[1]:>8.2f}   (one step of each model timed)")

if __name__ == "__main__":
    main()
