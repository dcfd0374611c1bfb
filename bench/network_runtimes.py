"""The shipped network on torch, ONNX Runtime and OpenVINO: seconds per case and agreement with torch.

    python bench/network_runtimes.py [CASE ...] [--runs 3] [--threads N]

Needs `onnxruntime`, `openvino` and `onnx` (pip install onnxruntime openvino onnx; not BrainSeg
dependencies). Each case (default: the BraTS2021 cases of ../shared/data) goes through the real
predictor once to capture the network's input window (cropped, normalised, resampled, padded);
then each runtime runs the same window `--runs` times on the same threads. Printed per runtime:
median network seconds over the cases, the ratio to torch's (measured in the same run), and the
Dice of the thresholded WT/TC/ET regions against torch's on every case (a runtime is worth keeping
only when it is faster and agrees at >= 0.999). OpenVINO runs in f32, on CPUs that have it with
its bf16 inference hint, and in int8 (VNNI) when NNCF is installed (pip install nncf): post-training
quantization calibrated on the captured windows themselves, the most favourable case for it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def capture_windows(cases: list[Path]) -> list[np.ndarray]:
    """The network input of each case, as the predictor builds it (one window covers a brain)."""
    from brainseg_gui.core.io import find_case, load_study
    from brainseg_gui.ml import predictor as predictor_module
    from brainseg_gui.ml.predictor import Predictor

    windows: list[np.ndarray] = []
    original = predictor_module._CountingNetwork.__call__

    def record(self, window):  # type: ignore[no-untyped-def]
        windows.append(window.detach().float().cpu().numpy().copy())
        return original(self, window)

    predictor = Predictor.from_model_dir(None, device="cpu")
    predictor_module._CountingNetwork.__call__ = record  # type: ignore[method-assign]
    try:
        for case in cases:
            predictor(load_study(find_case(case)))
    finally:
        predictor_module._CountingNetwork.__call__ = original  # type: ignore[method-assign]
    return windows


def _regions(logits: np.ndarray) -> np.ndarray:
    return logits > 0.0  # sigmoid(x) > 0.5


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    try:
        import onnxruntime as ort
        import openvino as ov
    except ImportError as error:
        print(f"network_runtimes: {error}; pip install onnxruntime openvino onnx", file=sys.stderr)
        return 2
    from brainseg_gui.ml.checkpoint import load_model
    from brainseg_gui.ml.shipped import shipped_model_dir

    cases = args.cases or sorted(p for p in (DATA / "brats2021").iterdir() if p.is_dir())
    torch.set_num_threads(args.threads)
    windows = capture_windows(cases)
    network = load_model(shipped_model_dir(), "cpu").generator.eval()
    print(f"{len(windows)} case(s), windows {', '.join('x'.join(map(str, w.shape[2:])) for w in windows)}; "
          f"{args.threads} threads; torch {torch.__version__}, onnxruntime {ort.__version__}, openvino {ov.__version__}")

    def torch_run(window: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensor = torch.from_numpy(window).contiguous(memory_format=torch.channels_last_3d)
            return network(tensor).float().numpy()

    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "generator.onnx"
        example = torch.from_numpy(windows[0])
        torch.onnx.export(network, (example,), str(onnx_path), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {2: "i", 3: "j", 4: "k"}, "logits": {2: "i", 3: "j", 4: "k"}},
                          opset_version=17, dynamo=False)
        def onnxruntime_run():  # type: ignore[no-untyped-def]
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy threads after
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            return lambda w: session.run(None, {"x": w})[0]

        def openvino_run(precision: str):  # type: ignore[no-untyped-def]
            def build():  # type: ignore[no-untyped-def]
                core = ov.Core()
                compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU",
                                              {"INFERENCE_PRECISION_HINT": precision,
                                               "INFERENCE_NUM_THREADS": args.threads})
                return lambda w: compiled([w])[0]
            return build

        def openvino_int8():  # type: ignore[no-untyped-def]
            import nncf

            core = ov.Core()
            model = core.read_model(str(onnx_path))
            quantized = nncf.quantize(model, nncf.Dataset(windows), subset_size=len(windows))
            compiled = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": args.threads})
            return lambda w: compiled([w])[0]

        # each runtime is built only when its turn comes, so no other runtime's threads are alive yet
        runtimes = {"torch (f32, channels_last_3d)": lambda: torch_run, "onnxruntime (f32)": onnxruntime_run,
                    "openvino (f32)": openvino_run("f32"), "openvino (bf16)": openvino_run("bf16")}
        try:
            import nncf  # noqa: F401

            runtimes["openvino (int8, NNCF)"] = openvino_int8
        except ImportError:
            print("openvino int8: not measured (pip install nncf)")
        reference: list[np.ndarray] = []
        torch_seconds = None
        print(f"{'runtime':32s} {'median s':>9s} {'x torch':>8s}  Dice vs torch (WT/TC/ET, worst case)")
        for name, build in runtimes.items():
            try:
                run = build()
            except RuntimeError as error:
                print(f"{name}: not available ({str(error).splitlines()[0]})")
                continue
            seconds = []
            dices = []
            for index, window in enumerate(windows):
                run(window)  # warm-up: first-call planning is not what a cohort pays per case
                times = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    out = run(window)
                    times.append(time.perf_counter() - started)
                seconds.append(statistics.median(times))
                regions = _regions(np.asarray(out, dtype=np.float32))
                if len(reference) <= index:
                    reference.append(regions)
                dices.append([_dice(regions[0, r], reference[index][0, r]) for r in range(3)])
            median = statistics.median(seconds)
            torch_seconds = torch_seconds or median
            worst = np.min(np.array(dices), axis=0)
            print(f"{name:32s} {median:9.3f} {median / torch_seconds:8.2f}  "
                  f"{worst[0]:.4f} / {worst[1]:.4f} / {worst[2]:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
