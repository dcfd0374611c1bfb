"""Training under torchrun: two gloo processes on tiny phantoms end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from brainseg_gui.core.phantom import write_phantom_case
from brainseg_gui.ml import distributed, train_state
from brainseg_gui.ml.checkpoint import load_model

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_a_plain_run_is_not_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    context, device = distributed.setup("cpu")
    assert not context.enabled and context.is_main and device.type == "cpu"
    assert not distributed.active()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.gather_objects(5) == [5]
    tensor = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.mean_across_ranks(tensor), tensor)
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap(module, device) is module and distributed.unwrap(module) is module


def test_batches_are_shared_out_over_ranks() -> None:
    shares = [distributed.shard(16, distributed.DistContext(rank=r, world_size=3)) for r in range(3)]
    assert shares == [6, 5, 5]
    assert distributed.shard(1, distributed.DistContext(rank=1, world_size=2)) == 1


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for seed in (1, 2, 3):
        write_phantom_case(data, seed=seed, shape=(48, 48, 40))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(WORKER), str(data), str(out)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1]) and any(k.startswith("discriminator.") for k in ranks[0])
    different = [k for k in ranks[0] if k != "batch_per_rank" and not torch.equal(ranks[0][k], ranks[1][k])]
    assert different == []
    assert int(ranks[0]["batch_per_rank"]) == 2  # the global batch of 4 split over two processes
    with safe_open(str(out / "rank1.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert meta["world"] == "2" and meta["backend"] == "gloo"

    # Rank 0 alone wrote the model and the checkpoint; they hold the weights both ranks ended with.
    state = train_state.load_state(out / "model")
    assert state["epoch"] == 2 and len(state["sampler_ranks"]) == 2
    assert not torch.equal(state["sampler_ranks"][0]["generator"], state["sampler_ranks"][1]["generator"])
    for key, value in state["generator"].items():
        assert torch.equal(value, ranks[1][f"generator.{key}"]), key
    card = load_model(out / "model").card
    assert card.training["processes"] == 2 and card.version == meta["version"]
    assert not (out / "model" / "rank1").exists()
