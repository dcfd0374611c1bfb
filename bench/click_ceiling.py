"""The ceiling of click correction without a new network: what the shipped network's own features allow.

Run: python bench/click_ceiling.py [path to ../shared/data] [--bands 2,4,8]

Any correction that keeps the shipped network (a random walker or graph cut on its probabilities, as
`core/click_refine` does, or adapting its last layer to the clicks at test time) decides each voxel
from what the network and the sequences say about it. This bench gives such a method every advantage:
per case and region, a logistic classifier on the network's last feature map (16 channels), the four
sequences and the three logits is fitted on the TRUTH itself, in a band of +-B voxels (1 mm) around the
predicted border, and replaces the prediction there. No clicks can teach more than the truth, so its
Dice bounds every click method of that kind. Cases: the shipped model's validation cases (it did not
train on them). Dice is computed on the brain crop at 1 mm, as the predictor sees it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from brainseg_gui.core.dice import dice

REPO = Path(__file__).resolve().parents[1]
ARGS = [a for i, a in enumerate(sys.argv[1:]) if not a.startswith("--") and not sys.argv[i].startswith("--")]
DATA = Path(ARGS[0]) if ARGS else REPO.parent / "shared" / "data"
GOAL_AFTER_3_CLICKS = {"WT": 0.93, "ET": 0.85}  # issue 20


def features_and_logits(predictor, study):
    """(features C x crop, logits 3 x crop, sequences 4 x crop, prepared input): the network's view at 1 mm."""
    from brainseg_gui.ml.preprocess import model_shape, prepare, resize_linear

    network, settings = predictor.network, predictor.settings
    seen: dict[str, torch.Tensor] = {}
    hook = network.head.register_forward_pre_hook(lambda _module, inputs: seen.__setitem__("features", inputs[0]))
    prepared = prepare(study, settings.normalisation)
    crop = prepared.volume.shape[1:]
    shape = model_shape(crop, prepared.spacing, settings.resolution_mm)
    volume = resize_linear(prepared.volume, shape)
    padding = [(0, 0)] + [(0, (-n) % network.divisor) for n in shape]
    with torch.inference_mode():
        logits = network(torch.from_numpy(np.pad(volume, padding))[None])[0]
    hook.remove()
    inside = (slice(None), *(slice(0, n) for n in shape))
    logits = logits[inside].numpy()[list(settings.region_order)]
    features = seen["features"][0][inside].numpy()
    return resize_linear(features, crop), resize_linear(logits, crop), prepared


def fit_in_band(inputs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """A logistic classifier fitted on (voxels x inputs) against the truth; its own decisions on them."""
    x = torch.from_numpy(((inputs - inputs.mean(0)) / (inputs.std(0) + 1e-6)).astype(np.float32))
    y = torch.from_numpy(truth.astype(np.float32))
    linear = torch.nn.Linear(x.shape[1], 1)
    optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=100)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(x)[:, 0], y)
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return (linear(x)[:, 0] > 0).numpy()


def main() -> None:
    from brainseg_gui.core.io import load_study
    from brainseg_gui.core.labels import REGIONS, LabelConvention, convert, to_regions
    from brainseg_gui.ml.predictor import Predictor

    bands = [int(b) for b in (sys.argv[sys.argv.index("--bands") + 1] if "--bands" in sys.argv else "2,4,8").split(",")]
    card = json.loads((REPO / "model" / "card.json").read_text())
    names = card["training"]["validation_cases"]
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; cases {', '.join(names)}; "
          f"bands +-{', +-'.join(map(str, bands))} voxels")
    predictor = Predictor.from_model_dir(None, device="cpu")
    brats = LabelConvention.BRATS
    start, ceiling = [], {band: [] for band in bands}
    for name in names:
        case = next(DATA.glob(f"brats20*/{name}"))
        study = load_study(case)
        features, logits, prepared = features_and_logits(predictor, study)
        truth_full = to_regions(convert(study.labels, study.label_convention, brats), brats)
        truth = np.stack([prepared.reorientation.apply(region)[prepared.box] for region in truth_full])
        start.append([dice(logits[r] > 0, truth[r]) for r in range(3)])
        for band in bands:
            scores = []
            for r in range(3):
                mask = logits[r] > 0
                near = ndimage.binary_dilation(mask, iterations=band) & ~ndimage.binary_erosion(mask, iterations=band)
                inputs = np.concatenate([features[:, near], prepared.volume[:, near], logits[:, near]]).T
                corrected = mask.copy()
                corrected[near] = fit_in_band(inputs, truth[r][near])
                scores.append(dice(corrected, truth[r]))
            ceiling[band].append(scores)
        print(f"{name}: start {' '.join(f'{v:.3f}' for v in start[-1])}; ceiling "
              + "; ".join(f"+-{band}: {' '.join(f'{v:.3f}' for v in ceiling[band][-1])}" for band in bands), flush=True)
    print(f"\nmean Dice ({' / '.join(REGIONS)}) over {len(names)} held-out cases:")
    print(f"  shipped model                  {' / '.join(f'{v:.3f}' for v in np.mean(start, axis=0))}")
    for band in bands:
        print(f"  ceiling, truth within +-{band} vox  {' / '.join(f'{v:.3f}' for v in np.mean(ceiling[band], axis=0))}")
    print("goal after 3 clicks (issue 20): " + ", ".join(f"{k} >= {v}" for k, v in GOAL_AFTER_3_CLICKS.items()))


if __name__ == "__main__":
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    main()
