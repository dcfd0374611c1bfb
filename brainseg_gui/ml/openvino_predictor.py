"""Predicting on the cached OpenVINO network without importing torch: a one-case command in ~3 s, not ~5.

Importing torch takes ~1.8 s of a `brainseg predict CASE` on two cores, more than the network itself.
Once a model has been converted for OpenVINO (the first CPU prediction does it, ml/openvino_network.py),
its converted network is in the user's cache, keyed by the weights' version, a digest of the card's
network (architecture and config) and the OpenVINO version. When a command finds it there it reads
the card without torch, checks that the weights are still that version, and runs ml/prediction's
pipeline with this network: the same numpy steps as the torch predictor, so the same labels.

Anything unusual takes the full torch path instead (`cached_predictor` returns None): a GPU that may be
present, TTA, a model not converted yet, weights that no longer match their card, or a pointer to an
active model that cannot be read. A crop larger than one window is handed to the torch predictor,
which tiles it (sliding windows).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.core.errors import BrainSegError, ModelError
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.read_guard import read_small_text
from brainseg_gui.core.study import Study
from brainseg_gui.ml.cpu_threads import cpu_threads, describe_cpu
from brainseg_gui.ml.model_card import ModelCard, checked_weights, read_card
from brainseg_gui.ml.prediction import InferenceSettings, Prediction, Segmenter, segment

log = logging.getLogger(__name__)

#: The converted network and what the torch side recorded about it beside it.
IR_FILE = "generator.xml"
NETWORK_FILE = "network.json"
#: Device files whose presence means a CUDA GPU may be usable (then "auto" must ask torch).
_GPU_DEVICE_FILES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/proc/driver/nvidia/gpus")


class _SmallerWindowsNeeded(BrainSegError):
    """The crop does not fit one window: the torch predictor tiles it (sliding windows)."""


def ir_folder(cache_dir: Path, card: ModelCard, openvino_version: str) -> Path:
    """Where the network of `card` converted by `openvino_version` is kept in the cache."""
    network = json.dumps({"architecture": card.architecture, "config": card.config}, sort_keys=True)
    digest = hashlib.sha256(network.encode("utf-8")).hexdigest()[:8]
    return Path(cache_dir) / "openvino" / f"{card.version}-{digest}-{openvino_version.split('-')[0]}"


def compile_ir(folder: Path, threads: int) -> Any:
    """The converted network in `folder` compiled for the CPU (OpenVINO's compiled-blob cache beside it)."""
    import openvino as ov

    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(folder / IR_FILE)), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
            "CACHE_DIR": str(folder / "compiled")})
    except RuntimeError as error:
        raise ModelError(f"OpenVINO cannot compile the model in {folder}: {str(error).splitlines()[0]}") from None


def run_compiled(compiled: Any, window: np.ndarray) -> np.ndarray:
    """(1, 4, x, y, z) float32 -> (1, 3, x, y, z) float32 logits on a compiled network.

    One infer request per call: a cohort worker's threads may share the compiled network.
    """
    request = compiled.create_infer_request()
    request.infer([np.ascontiguousarray(window, dtype=np.float32)])
    return np.array(request.get_output_tensor(0).data, dtype=np.float32)


class OpenVinoPredictor:
    """Segments studies on a compiled OpenVINO network, without torch; build it with `cached_predictor`."""

    runtime = "openvino"

    def __init__(self, compiled: Any, card: ModelCard, *, divisor: int, threads: int, allow_missing: bool = False,
                 larger: Callable[[], Segmenter]) -> None:
        self.compiled = compiled
        self._larger = larger
        self._tiling: Segmenter | None = None
        self.card = card
        self.settings = InferenceSettings.from_card(card)
        self.divisor = divisor
        self.allow_missing = allow_missing
        self.model_version = self.settings.model_version
        self.model_note = ""
        self.device_description = f"{describe_cpu(threads)}, OpenVINO"

    def __call__(self, study: Study, *, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                 keep_probabilities: bool = False) -> Prediction:
        """Segment `study`; a crop larger than one window goes to the `larger` predictor (built once)."""
        try:
            return segment(study, self._network_logits, self.settings, allow_missing=self.allow_missing,
                           progress=progress, cancel=cancel, keep_probabilities=keep_probabilities)
        except _SmallerWindowsNeeded as reason:
            log.info("%s: %s; tiling it with the torch predictor", study.case_id, reason)
            self._tiling = self._tiling or self._larger()
            return self._tiling(study, progress=progress, cancel=cancel, keep_probabilities=keep_probabilities)

    def _network_logits(self, volume: np.ndarray, progress: ProgressFn, cancel: CancelToken,
                        notes: list[str]) -> tuple[np.ndarray, str]:
        size = volume.shape[2:]
        padded = [n + (-n) % self.divisor for n in size]
        if any(p > r for p, r in zip(padded, self.settings.windows.roi)):
            raise _SmallerWindowsNeeded(f"a crop of {'x'.join(map(str, padded))} voxels needs sliding windows")
        cancel.raise_if_cancelled()
        window = np.pad(volume, [(0, 0), (0, 0), *[(0, p - n) for p, n in zip(padded, size)]])
        logits = run_compiled(self.compiled, window)
        progress(1.0, "window 1 of 1")
        return logits[:, :, : size[0], : size[1], : size[2]], self.device_description


def cached_predictor(model_dir: Path | None, *, larger: Callable[[], Segmenter], device: str = "auto",
                     runtime: str = "auto", tta: bool = False, allow_missing: bool = False,
                     cache_dir: Path | None = None) -> OpenVinoPredictor | None:
    """The OpenVINO predictor of `model_dir` (None: the active model) when its converted network is
    cached and nothing asks for torch; None otherwise (the caller builds the torch Predictor).

    `larger` builds the torch predictor of the same model, for a crop larger than one window.
    """
    if tta or runtime not in ("auto", "openvino") or device not in ("auto", "cpu"):
        return None
    if device == "auto" and any(os.path.exists(path) for path in _GPU_DEVICE_FILES):
        return None  # a GPU may be usable: only torch can tell, and it would run there
    if find_spec("openvino") is None:
        return None
    try:
        import openvino as ov

        from brainseg_gui.core.dicom_sources import cache_root
        from brainseg_gui.ml.model_registry import SHIPPED, ModelRegistry
        from brainseg_gui.ml.shipped import shipped_model_dir

        if model_dir is None:
            registry = ModelRegistry()
            name, problem = registry.active_name()
            if problem:
                return None  # the torch path falls back to the shipped model and says why
            model_dir = shipped_model_dir() if name == SHIPPED else registry.directory_of(name)
        card = read_card(Path(model_dir))
        checked_weights(Path(model_dir), card)
        folder = ir_folder(cache_dir or cache_root(), card, ov.__version__)
        if not (folder / IR_FILE).is_file() or not (folder / NETWORK_FILE).is_file():
            return None
        divisor = int(json.loads(read_small_text(folder / NETWORK_FILE, "converted network record", 1 << 16))["divisor"])
        threads = cpu_threads()
        compiled = compile_ir(folder, threads)
    except (BrainSegError, OSError, ValueError, KeyError, TypeError) as error:
        log.info("not using the cached OpenVINO network: %s", error)
        return None
    return OpenVinoPredictor(compiled, card, divisor=divisor, threads=threads, allow_missing=allow_missing,
                             larger=larger)
