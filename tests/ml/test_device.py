"""Device selection: auto falls back to the CPU, an absent GPU is a clear error, names read well."""

from __future__ import annotations

import pytest
import torch

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.ml.cpu_threads import available_cores
from brainseg_gui.ml.device import DeviceError, describe_device, select_device


def test_auto_without_gpu_is_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device() == torch.device("cpu")


def test_cuda_without_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no usable CUDA GPU.*--device cpu"):
        select_device("cuda")
    assert issubclass(DeviceError, BrainSegError)


def test_unknown_device_names_the_choices() -> None:
    with pytest.raises(DeviceError, match="'tpu'.*auto, cpu, cuda"):
        select_device("tpu")


def test_cpu_sets_threads_to_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        select_device("CPU")
        assert torch.get_num_threads() == available_cores()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        select_device("cpu")
        assert torch.get_num_threads() == 1
        assert describe_device(torch.device("cpu")) == "CPU, 1 thread"
    finally:
        torch.set_num_threads(before)


def test_describe_cpu_names_thread_count() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "CPU, 2 threads"
    finally:
        torch.set_num_threads(before)


def test_describe_cuda_uses_the_gpu_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA H100 80GB HBM3")
    assert describe_device(torch.device("cuda", 0)) == "NVIDIA H100 80GB HBM3 (CUDA)"
