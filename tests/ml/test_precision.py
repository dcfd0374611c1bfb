"""The arithmetic a run uses (ml/precision.py): bf16 where the CPU computes it and the networks allow it."""

from __future__ import annotations

import pytest
import torch

from brainseg_gui.ml import precision
from brainseg_gui.ml.networks import build_discriminator, build_generator

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_on_cpus_that_compute_it_natively(native: bool, monkeypatch) -> None:
    """Emulated bf16 makes a step slower, so "auto" keeps fp32 on CPUs without AVX-512 BF16 / AMX."""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native)
    assert precision.autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert precision.autocast_dtype("bf16", CPU) == torch.bfloat16
    assert precision.autocast_dtype("off", CPU) is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        precision.autocast_dtype("fp16", CPU)
    with pytest.raises(ValueError, match="amp must be one of"):
        precision.autocast_dtype("half", CPU)


def test_the_thinnest_convolution_input_is_found_from_shapes_alone() -> None:
    generator = build_generator("generator3d", {"widths": [4, 8, 16, 32]})  # three poolings
    discriminator = build_discriminator({"widths": [4, 8, 16]})  # three stride-2 convolutions
    before = [p.clone() for p in generator.parameters()]
    assert precision.thinnest_convolution_input([(generator, ((1, 4, 64, 64, 64),))]) == 8
    assert precision.thinnest_convolution_input([(generator, ((1, 4, 16, 16, 16),))]) == 2
    assert precision.thinnest_convolution_input([(discriminator, ((1, 4, 32, 48, 64), (1, 3, 32, 48, 64)))]) == 4
    assert all(torch.equal(a, b) for a, b in zip(before, generator.parameters()))  # a copy ran, not the network
    assert generator.training and next(generator.parameters()).device == CPU


def test_thin_inputs_keep_auto_in_fp32_and_refuse_an_explicit_bf16(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.training_dtype("auto", CPU, thinnest=8) == torch.bfloat16
    assert precision.training_dtype("auto", CPU, thinnest=2) is None
    assert precision.training_dtype("off", CPU, thinnest=2) is None
    with pytest.raises(ValueError, match="wrong gradients for convolutions over fewer than 4 voxels"):
        precision.training_dtype("bf16", CPU, thinnest=2)
    assert precision.precision_name(None) == "fp32" and precision.precision_name(torch.bfloat16) == "bf16"
