"""The paper's comparison networks: registered, shapes, padding divisor, sizes, one training step each."""

from __future__ import annotations

import pytest
import torch

from brainseg_gui.core.errors import ModelError
from brainseg_gui.ml import baselines
from brainseg_gui.ml.checkpoint import ModelCard, load_model, save_model
from brainseg_gui.ml.losses import reconstruction_loss
from brainseg_gui.ml.networks import (
    GENERATORS,
    build_generator,
    divisor,
    fuse_for_inference,
    parameter_count,
    set_output_prior,
)

#: Tiny configs of every baseline (a few hundred parameters a layer) for fast CPU tests.
TINY = {
    "fcn8s": {"widths": [2, 2, 4, 4, 4, 4], "convs": [1, 1, 1, 1, 1]},
    "segnet": {"widths": [2, 4, 4], "convs": [1, 2, 1]},
    "unet": {"widths": [2, 4, 4]},
    "deeplabv1": {"widths": [2, 4, 4, 4], "convs": [1, 1, 1, 1, 1], "fc_width": 4, "fov_dilation": 2},
    "deeplabv2": {"widths": [2, 4, 4, 4], "convs": [1, 1, 1, 1, 1], "fc_width": 4, "rates": [1, 2]},
}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def test_every_baseline_is_a_registered_generator() -> None:
    assert set(baselines.BASELINES) == {"fcn8s", "segnet", "unet", "deeplabv1", "deeplabv2"}
    for name, constructor in baselines.BASELINES.items():
        assert GENERATORS[name] is constructor
    assert GENERATORS["generator3d"].__name__ == "Generator3D"


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_follow_the_divisor_contract(name: str) -> None:
    model = build_generator(name, TINY[name]).eval()
    step = divisor(TINY[name])
    assert model.divisor == step == {"fcn8s": 32, "segnet": 4, "unet": 4, "deeplabv1": 8, "deeplabv2": 8}[name]
    shape = (step, 2 * step, 3 * step) if step < 32 else (32, 64, 32)
    with torch.no_grad():
        out = model(torch.randn(1, 4, *shape))
    assert out.shape == (1, 3, *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(TINY))
def test_one_training_step_changes_the_weights_and_fused_inference_agrees(name: str) -> None:
    torch.manual_seed(0)
    model = build_generator(name, TINY[name])
    size = max(model.divisor, 8)
    image = torch.randn(2, 4, size, size, size)
    target = (torch.rand(2, 3, size, size, size) > 0.7).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = reconstruction_loss(model(image), target, dice=True)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 3
    model.eval()
    with torch.no_grad():
        expected = model(image[:1])
        fused = fuse_for_inference(model)(image[:1])
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", [*sorted(TINY), "generator3d"])
def test_the_output_prior_sets_every_output_to_that_probability(name: str) -> None:
    config = TINY.get(name, {"widths": [2, 4, 4], "deep_supervision": True})
    model = build_generator(name, config)
    set_output_prior(model, 0.01)
    with torch.no_grad():  # with the output layers' weights at zero only their biases are left
        for layer, _share in model.output_layers():
            layer.weight.zero_()
        step = divisor(config)
        shape = (step, 2 * step, 3 * step) if step < 32 else (32, 64, 32)
        outputs = model.train()(torch.randn(2, 4, *shape))  # train mode: the deep-supervision heads too
    for out in outputs if isinstance(outputs, list) else [outputs]:
        assert torch.allclose(torch.sigmoid(out), torch.full_like(out, 0.01), atol=1e-5)


def test_an_output_prior_outside_0_1_is_refused() -> None:
    model = build_generator("unet", TINY["unet"])
    for prior in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ModelError, match="strictly between 0 and 1"):
            set_output_prior(model, prior)


def test_default_sizes_are_comparable_with_ours() -> None:
    table = {name: count for name, count, _ in baselines.parameter_table()}
    ours = table.pop("generator3d")
    assert ours == 1_402_889
    for name, count in table.items():
        assert 0.9 * ours < count < 1.2 * ours, (name, count)


def test_bad_configs_raise_model_errors_naming_them() -> None:
    with pytest.raises(ModelError, match="FCN-8s widths must list 6"):
        build_generator("fcn8s", {"widths": [4, 8]})
    with pytest.raises(ModelError, match="SegNet convs must list 2"):
        build_generator("segnet", {"widths": [4, 8], "convs": [1]})
    with pytest.raises(ModelError, match="rates"):
        build_generator("deeplabv2", {"rates": []})
    with pytest.raises(ModelError, match="does not fit architecture 'unet'"):
        build_generator("unet", {"widths": [4, 8], "fov_dilation": 2})


def test_a_baseline_saves_and_loads_through_a_card(tmp_path) -> None:
    model = build_generator("segnet", TINY["segnet"])
    card = save_model(tmp_path, model, ModelCard(architecture="segnet", config=TINY["segnet"], resolution_mm=2.0))
    loaded = load_model(tmp_path)
    assert loaded.card.version == card.version and loaded.card.architecture == "segnet"
    assert parameter_count(loaded.generator) == parameter_count(model)
    image = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator(image), model.eval()(image))
