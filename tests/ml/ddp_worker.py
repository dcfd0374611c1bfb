"""One rank of the two-process gloo test (tests/ml/test_distributed.py), started by torchrun.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ml/ddp_worker.py DATA OUT

Trains a tiny generator on the phantoms in DATA, then writes this rank's final generator and
discriminator state to OUT/rank<R>.safetensors so the test can compare the ranks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from brainseg_gui.ml import distributed, training


def main(data: Path, out: Path) -> None:
    # train() does not hand back its modules; after each epoch it averages their BatchNorm buffers
    # through distributed.average_buffers, so that call tells us which plain modules it trains.
    seen: dict[str, nn.Module] = {}
    original = distributed.average_buffers

    def spy(module: nn.Module) -> None:
        seen["generator" if "generator" not in seen or seen["generator"] is module else "discriminator"] = module
        original(module)

    distributed.average_buffers = spy  # type: ignore[assignment]
    config = training.TrainConfig(
        data_dirs=[data], out_dir=out / "model", cache_dir=out / "cache", epochs=2, steps_per_epoch=2,
        batch_size=4, patch_size=16, resolution_mm=2.0, network={"widths": [4, 8], "deep_supervision": True},
        discriminator={"widths": [4, 8]}, val_fraction=0.34, device="cpu", seed=3,
    )
    result = training.train(config)
    context = distributed.env_context()
    state = {f"{name}.{key}": value.detach().clone().contiguous()
             for name, module in seen.items() for key, value in module.state_dict().items()}
    state["batch_per_rank"] = torch.tensor(distributed.shard(config.batch_size, context))
    save_file(state, str(out / f"rank{context.rank}.safetensors"),
              metadata={"version": result.card.version, "world": str(context.world_size),
                        "backend": context.backend})
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
