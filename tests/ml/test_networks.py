"""Generator / discriminator shapes, the registry, and BN folding."""

from __future__ import annotations

import pytest
import torch

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml.networks import (
    DEFAULT_CONFIG,
    GENERATORS,
    Generator3D,
    PatchDiscriminator3D,
    build_discriminator,
    build_generator,
    divisor,
    fuse_for_inference,
)

TINY = {"widths": [4, 8, 16], "deep_supervision": True}


def test_divisor_is_two_to_the_number_of_poolings() -> None:
    assert divisor(TINY) == 4
    assert divisor(DEFAULT_CONFIG) == 2 ** (len(DEFAULT_CONFIG["widths"]) - 1)
    assert Generator3D(widths=[4, 8, 16]).divisor == 4


@pytest.mark.parametrize("size", [(8, 12, 4), (16, 8, 20)])
def test_eval_forward_returns_one_tensor_of_input_size(size: tuple[int, int, int]) -> None:
    generator = build_generator("generator3d", TINY).eval()
    with torch.inference_mode():
        out = generator(torch.randn(2, 4, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *size)


def test_training_forward_returns_deep_supervision_outputs_coarsest_last() -> None:
    generator = build_generator("generator3d", {"widths": [4, 8, 16, 32], "deep_supervision": True}).train()
    outputs = generator(torch.randn(1, 4, 16, 16, 16))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 16, 16, 16), (1, 3, 8, 8, 8), (1, 3, 4, 4, 4)]
    plain = build_generator("generator3d", {"widths": [4, 8]}).train()
    assert isinstance(plain(torch.randn(1, 4, 8, 8, 8)), torch.Tensor)


def test_strided_down_sampling_variant_has_the_same_output_shape() -> None:
    generator = Generator3D(widths=[4, 8, 16], down="stride").eval()
    with torch.inference_mode():
        assert generator(torch.randn(1, 4, 8, 8, 12)).shape == (1, 3, 8, 8, 12)


def test_discriminator_sees_image_and_regions_and_outputs_patch_logits() -> None:
    discriminator = build_discriminator({"widths": [4, 8, 16]})
    assert isinstance(discriminator, PatchDiscriminator3D)
    out = discriminator(torch.randn(2, 4, 32, 32, 16), torch.rand(2, 3, 32, 32, 16))
    assert out.shape == (2, 1, 4, 4, 2)


def test_unknown_architecture_or_config_key_is_a_model_error() -> None:
    assert "generator3d" in GENERATORS
    with pytest.raises(ModelError, match="unknown architecture 'unet9'"):
        build_generator("unet9", TINY)
    with pytest.raises(ModelError, match="colour"):
        build_generator("generator3d", {"widths": [4, 8], "colour": "red"})
    with pytest.raises(ModelError, match="widths"):
        build_generator("generator3d", {"widths": [4]})


def test_fused_copy_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    generator = build_generator("generator3d", TINY)
    for module in generator.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    generator.eval()
    fused = fuse_for_inference(generator)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(fused(x), generator(x), atol=1e-4)
