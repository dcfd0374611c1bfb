"""Inference speed and memory on one full real case, against MONAI's SegResNet as a yardstick.

    python bench/inference.py [CASE] [--device cpu|cuda] [--model DIR | --random-model]
                              [--runs 3] [--reference-windows N] [--skip-reference]

Prints, for the same case (default ../shared/data/brats2021/BraTS2021_00003, 240x240x155):
- the whole command `brainseg predict CASE -o OUT` as a user runs it (wall time of the process, median
  of --runs; goal <= 3.5 s), and whether it ran without importing torch (ml/openvino_predictor.py);
- ours, end to end: load the four sequences, predict, write the label map + sidecar (what
  `brainseg predict` does), each run in a fresh subprocess; median seconds and peak RSS;
  also the process start (imports + model load) and a warm second prediction in the same process;
- MONAI SegResNet (init_filters 16, blocks_down 1,2,2,4, blocks_up 1,1,1, 4 -> 3, random weights)
  through sliding_window_inference (roi 128^3, overlap 0.5, Gaussian) on the same normalised
  case. With --reference-windows N only the first N windows run the network (the others return
  zeros, the blending still runs) and the full time is extrapolated from the mean window time:
  both the measured and the extrapolated figures are printed;
- the ratio ours / SegResNet (target <= 0.06).
Each measurement runs in its own subprocess, so peak RSS (ru_maxrss of that process) is clean.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2021" / "BraTS2021_00003"
REFERENCE_ROI = (128, 128, 128)
REFERENCE_OVERLAP = 0.5


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


# -- children: each prints one JSON line --------------------------------------------------------------


def child_ours(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    import torch  # noqa: F401  (import time is part of the process start)

    from brainseg_gui.ml.predict import predict_case
    from brainseg_gui.ml.predictor import Predictor, random_predictor

    imported = time.perf_counter()
    if args.random_model:
        predictor = random_predictor(resolution_mm=args.resolution, device=args.device)
    else:
        predictor = Predictor.from_model_dir(Path(args.model) if args.model else None, device=args.device,
                                             runtime=args.runtime)
    model_loaded = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "prediction.nii.gz"
        _sync(args.device)
        case_started = time.perf_counter()
        summary = predict_case(Path(args.case), output, predictor=predictor)
        _sync(args.device)
        case_seconds = time.perf_counter() - case_started
        sidecar = json.loads(output.with_name("prediction.json").read_text())
        warm = []
        for _ in range(args.warm):
            from brainseg_gui.core.io import load_study

            study = load_study(Path(args.case))
            _sync(args.device)
            t0 = time.perf_counter()
            predictor(study)
            _sync(args.device)
            warm.append(time.perf_counter() - t0)
    return {
        "import_s": imported - started,
        "model_s": model_loaded - imported,
        "case_s": case_seconds,
        "stages": sidecar["seconds"],
        "warm_predict_s": statistics.median(warm) if warm else None,
        "peak_rss_mb": _peak_rss_mb(),
        "gpu_peak_mb": _gpu_peak_mb(args.device),
        "device": summary.device,
        "model_version": summary.model_version,
        "volumes_ml": dict(summary.volumes_ml),
    }


def child_reference(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet

    from brainseg_gui.core.io import load_study
    from brainseg_gui.ml.device import select_device

    device = select_device(args.device)
    study = load_study(Path(args.case))
    volume = study.stacked()
    brain = np.any(volume != 0, axis=0)
    for channel in volume:  # z-score inside the brain, as the bundle's NormalizeIntensity(nonzero=True)
        values = channel[brain]
        channel[brain] = (values - values.mean()) / max(float(values.std()), 1e-6)
    inputs = torch.from_numpy(volume)[None].to(device)
    torch.manual_seed(0)
    network = SegResNet(spatial_dims=3, init_filters=16, in_channels=4, out_channels=3,
                        blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), dropout_prob=0.2).to(device).eval()
    limit = args.reference_windows
    times: list[float] = []

    def counted(window: torch.Tensor) -> torch.Tensor:
        if limit is not None and len(times) >= limit:
            return torch.zeros((window.shape[0], 3, *window.shape[2:]), device=window.device)
        _sync(args.device)
        t0 = time.perf_counter()
        out = network(window)
        _sync(args.device)
        times.append(time.perf_counter() - t0)
        return out

    windows = _window_count(volume.shape[1:], REFERENCE_ROI, REFERENCE_OVERLAP)
    _sync(args.device)
    started = time.perf_counter()
    with torch.inference_mode():
        sliding_window_inference(inputs, REFERENCE_ROI, 1, counted, overlap=REFERENCE_OVERLAP, mode="gaussian")
    _sync(args.device)
    measured = time.perf_counter() - started
    skipped = windows - len(times)
    # the first window carries one-off set-up (kernel selection, allocations): extrapolate from the rest
    per_window = statistics.median(times[1:]) if len(times) > 1 else (times[0] if times else float("nan"))
    return {
        "window_s": times,
        "windows": windows,
        "windows_run": len(times),
        "measured_s": measured,
        "per_window_s": per_window,
        "full_s": measured + skipped * per_window,
        "extrapolated": skipped > 0,
        "peak_rss_mb": _peak_rss_mb(),
        "gpu_peak_mb": _gpu_peak_mb(args.device),
        "params_m": sum(p.numel() for p in network.parameters()) / 1e6,
    }


def _window_count(shape, roi, overlap) -> int:
    """The number of windows MONAI's sliding_window_inference visits (its scan-interval rule)."""
    import math

    count = 1
    for n, r in zip(shape, roi):
        interval = max(int(r * (1 - overlap)), 1)
        count *= 1 if n <= r else math.ceil((n - r) / interval) + 1
    return count


# -- parent ------------------------------------------------------------------------------------------


def _run_child(kind: str, argv: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), f"--child={kind}", *argv]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                          check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {kind} measurement failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_whole_command(args: argparse.Namespace) -> None:
    """`brainseg predict CASE -o OUT` in fresh processes, timed from outside (what a user waits for),
    interleaved with the same command on torch (`--runtime torch`) as the reference of the same run."""
    # `brainseg` as its console script runs it, and say at exit whether torch was imported.
    script = ("import sys; from brainseg_gui.cli import main; status = main(sys.argv[1:]); "
              "sys.stderr.write(f'torch imported: {\"torch\" in sys.modules}\\n'); sys.exit(status)")
    seconds: dict[str, list[float]] = {args.runtime: [], "torch": []}
    with_torch = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            for runtime, taken in seconds.items():
                command = [sys.executable, "-c", script, "predict", str(args.case), "-o",
                           str(Path(folder) / f"{runtime}{run}.nii.gz"), "--device", args.device, "--runtime", runtime]
                command += ["--model", str(args.model)] if args.model else []
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                taken.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"brainseg predict failed (exit {done.returncode}): {done.stderr[-2000:]}")
                if runtime == args.runtime:
                    with_torch.append("torch imported: True" in done.stderr)
    ours, reference = (statistics.median(seconds[k]) for k in (args.runtime, "torch"))
    print(f"\nwhole command `brainseg predict CASE -o OUT`, {args.runs} fresh processes each, interleaved:")
    print(f"  --runtime {args.runtime}: median {ours:.2f} s (runs: {', '.join(f'{s:.2f}' for s in seconds[args.runtime])};"
          f" goal <= 3.5 s); torch imported: {'yes' if any(with_torch) else 'no'}")
    print(f"  --runtime torch (reference): median {reference:.2f} s; ratio {ours / reference:.2f}")


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [str(args.case), "--device", args.device, "--resolution", str(args.resolution), "--warm", str(args.warm),
            "--runtime", args.runtime]
    if args.model:
        argv += ["--model", str(args.model)]
    if args.random_model:
        argv.append("--random-model")
    if args.reference_windows is not None:
        argv += ["--reference-windows", str(args.reference_windows)]
    return argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", nargs="?", type=Path, default=DEFAULT_CASE, help="a BraTS case folder")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "openvino"),
                        help="what runs our network on the CPU (default auto, as brainseg predict)")
    parser.add_argument("--model", type=Path, help="model directory (default: the shipped model)")
    parser.add_argument("--random-model", action="store_true",
                        help="random weights, default config (timing only: the masks mean nothing)")
    parser.add_argument("--resolution", type=float, default=2.0, help="mm, for --random-model")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes for our end-to-end time")
    parser.add_argument("--warm", type=int, default=2, help="extra predictions in the same process")
    parser.add_argument("--reference-windows", type=int, help="time only N SegResNet windows, extrapolate")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--child", choices=("ours", "reference"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        result = child_ours(args) if args.child == "ours" else child_reference(args)
        print(json.dumps(result))
        return 0
    if not args.case.is_dir():
        raise SystemExit(f"case folder {args.case} not found (give one as the first argument)")
    if not args.random_model:
        from brainseg_gui.ml.checkpoint import WEIGHTS_FILE
        from brainseg_gui.ml.shipped import default_model_dir

        model_dir = args.model or default_model_dir()
        if not (Path(model_dir) / WEIGHTS_FILE).is_file():
            raise SystemExit(f"no weights in {model_dir}: train one, pass --model DIR, or --random-model "
                             "(random weights, for timing only)")
    import platform

    import torch

    print(f"case: {args.case}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"torch {torch.__version__}, device {args.device}")
    print("model: " + ("RANDOM weights, default config (timing only; masks are meaningless)"
                       if args.random_model else str(args.model or "shipped default")))
    runs = [_run_child("ours", _child_argv(args)) for _ in range(args.runs)]  # the first converts for OpenVINO
    case_s = statistics.median(r["case_s"] for r in runs)
    first = runs[0]
    if not args.random_model:
        _print_whole_command(args)
    print(f"\nours ({first['device']}, model {first['model_version']}), {args.runs} fresh processes:")
    print(f"  end to end (load + predict + write): median {case_s:.2f} s "
          f"(runs: {', '.join(format(r['case_s'], '.2f') for r in runs)})")
    stages = {key: statistics.median(r["stages"].get(key, 0.0) for r in runs) for key in first["stages"]}
    print("  stages (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print(f"  process start: imports {statistics.median(r['import_s'] for r in runs):.2f} s, "
          f"model load {statistics.median(r['model_s'] for r in runs):.2f} s")
    if first["warm_predict_s"] is not None:
        print(f"  warm prediction in the same process (no load/write): "
              f"{statistics.median(r['warm_predict_s'] for r in runs):.2f} s")
    print(f"  peak RSS: {max(r['peak_rss_mb'] for r in runs):.0f} MB (max over runs)")
    if first["gpu_peak_mb"] is not None:
        print(f"  GPU peak allocated: {max(r['gpu_peak_mb'] for r in runs):.0f} MB")
    print("  volumes (mL): " + ", ".join(f"{k} {v:.1f}" for k, v in first["volumes_ml"].items()))
    if args.skip_reference:
        return 0
    reference = _run_child("reference", _child_argv(args))
    print(f"\nMONAI SegResNet ({reference['params_m']:.1f} M params, random weights), "
          f"sliding window 128^3, overlap 0.5, {reference['windows']} windows:")
    print(f"  measured: {reference['measured_s']:.2f} s with {reference['windows_run']} network windows "
          f"(window seconds: {', '.join(format(t, '.2f') for t in reference['window_s'])})")
    if reference["extrapolated"]:
        print(f"  extrapolated to all {reference['windows']} windows: {reference['full_s']:.1f} s "
              f"(measured + {reference['windows'] - reference['windows_run']} x "
              f"{reference['per_window_s']:.2f} s, the median window after the first)")
    print(f"  peak RSS: {reference['peak_rss_mb']:.0f} MB"
          + (" (with only some windows run)" if reference["extrapolated"] else ""))
    if reference["gpu_peak_mb"] is not None:
        print(f"  GPU peak allocated: {reference['gpu_peak_mb']:.0f} MB")
    ratio = case_s / reference["full_s"]
    how = "extrapolated" if reference["extrapolated"] else "measured"
    print(f"\nratio ours end-to-end / SegResNet inference ({how}): {ratio:.3f} (target <= 0.06)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
