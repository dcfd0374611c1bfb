"""The generator on OpenVINO: the CPU network at about half torch's time, with the same labels.

Measured with `bench/network_runtimes.py` on the shipped model and the BraTS2021 cases of
../shared/data, 2 cores: torch 1.65 s a case, ONNX Runtime 0.90x, OpenVINO f32 0.48x with the
thresholded WT/TC/ET regions identical to torch's (Dice 1.0000); OpenVINO bf16 is faster still
(0.28x) but agrees only to Dice 0.997, so it is not used. ONNX Runtime is not kept: too little gain.

The model is converted once per model version and OpenVINO version (`ov.convert_model`, ~10 s for
the shipped generator) into the user's cache, written atomically; later runs read it and compile
it in ~0.2 s (OpenVINO's own compiled-blob cache beside it). Inputs of any spatial size run on the
one converted model (dynamic shape).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainseg_gui.core.errors import ModelError

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

    def __init__(self, network: nn.Module, *, version: str, cache_dir: Path, threads: int | None = None) -> None:
        import openvino as ov

        self.threads = threads or torch.get_num_threads()
        folder = Path(cache_dir) / "openvino" / f"{version}-{ov.__version__.split('-')[0]}"
        model_xml = folder / "generator.xml"
        with _CONVERT_LOCK:
            if not model_xml.is_file():
                _convert(network, folder)
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(model_xml)), "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": self.threads,
                "CACHE_DIR": str(folder / "compiled")})
        except RuntimeError as error:
            raise ModelError(f"OpenVINO cannot compile the model in {folder}: {str(error).splitlines()[0]}") from None

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(window.detach().float().cpu().numpy())
        request = self.compiled.create_infer_request()  # one per call: a cohort worker's threads share the model
        request.infer([array])
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))


def _convert(network: nn.Module, folder: Path) -> None:
    """Convert `network` to OpenVINO IR in `folder`, atomically (a temporary folder renamed into place)."""
    import openvino as ov

    log.info("converting the model for OpenVINO once (about 10 s); kept in %s", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
    try:
        example = torch.zeros((1, 4, 32, 32, 32))
        model = ov.convert_model(network.float().eval(), example_input=example,
                                 input=[ov.PartialShape([1, 4, -1, -1, -1])])
        ov.save_model(model, str(staging / "generator.xml"))
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / "generator.xml").is_file():  # not another process's finished conversion
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


def describe(runtime: str) -> str:
    return "OpenVINO" if runtime == "openvino" else "torch"


def cpu_network(network: nn.Module, runtime: str, *, version: str, cache_dir: Path) -> Any:
    """The callable that runs `network` on the CPU under `runtime` (the module itself for torch)."""
    if runtime == "openvino":
        return OpenVinoNetwork(network, version=version, cache_dir=cache_dir)
    return network
