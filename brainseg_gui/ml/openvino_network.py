"""The generator on OpenVINO: the CPU network at about half torch's time, with the same labels.

Measured with `bench/network_runtimes.py` on the shipped model and the BraTS2021 cases of
../shared/data, 2 cores: torch 1.65 s a case, ONNX Runtime 0.90x, OpenVINO f32 0.48x with the
thresholded WT/TC/ET regions identical to torch's (Dice 1.0000); OpenVINO bf16 is faster still
(0.28x) but agrees only to Dice 0.997, so it is not used. ONNX Runtime is not kept: too little gain.

The model is converted once per model version, card network and OpenVINO version (`ov.convert_model`,
~10 s for the shipped generator) into the user's cache (ml/openvino_predictor.ir_folder), written
atomically with a record of the network's size divisor; later runs read it and compile it in ~0.2 s
(OpenVINO's own compiled-blob cache beside it), and a one-case command runs it without importing torch
(ml/openvino_predictor.py). Inputs of any spatial size run on the one converted model (dynamic shape).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import torch
from torch import nn

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml.model_card import ModelCard
from brainseg_gui.ml.openvino_predictor import IR_FILE, NETWORK_FILE, compile_ir, ir_folder, run_compiled

log = logging.getLogger(__name__)

#: The network runtimes `brainseg predict --runtime` offers on the CPU (a GPU always runs torch).
RUNTIMES = ("auto", "torch", "openvino")
_CONVERT_LOCK = threading.Lock()


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoNetwork:
    """Calls like the generator on a (1, 4, x, y, z) float tensor; returns (1, 3, x, y, z) float32 logits."""

    def __init__(self, network: nn.Module, *, card: ModelCard, divisor: int, cache_dir: Path,
                 threads: int | None = None) -> None:
        import openvino as ov

        self.threads = threads or torch.get_num_threads()
        folder = ir_folder(cache_dir, card, ov.__version__)
        with _CONVERT_LOCK:
            if not (folder / IR_FILE).is_file() or not (folder / NETWORK_FILE).is_file():
                _convert(network, folder, divisor)
        self.compiled = compile_ir(folder, self.threads)

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run_compiled(self.compiled, window.detach().float().cpu().numpy()))


def _convert(network: nn.Module, folder: Path, divisor: int) -> None:
    """Convert `network` to OpenVINO IR in `folder`, atomically (a temporary folder renamed into place)."""
    import openvino as ov

    log.info("converting the model for OpenVINO once (about 10 s); kept in %s", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
    try:
        example = torch.zeros((1, 4, 32, 32, 32))
        model = ov.convert_model(network.float().eval(), example_input=example,
                                 input=[ov.PartialShape([1, 4, -1, -1, -1])])
        ov.save_model(model, str(staging / IR_FILE))
        (staging / NETWORK_FILE).write_text(json.dumps({"divisor": int(divisor)}) + "\n")
        shutil.rmtree(folder, ignore_errors=True)  # a conversion from before the network record
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / IR_FILE).is_file():  # not another process's finished conversion
                raise
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds; torch still runs the model
        raise ModelError(f"cannot convert the model for OpenVINO: {type(error).__name__}: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """'torch' or 'openvino' for `device`: a GPU runs torch; 'auto' is OpenVINO on a CPU when installed."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if device.type != "cpu":
        return "torch"
    if runtime == "openvino" and not openvino_available():
        raise ModelError("--runtime openvino needs the openvino package (pip install openvino)")
    if runtime == "auto":
        return "openvino" if openvino_available() else "torch"
    return runtime
