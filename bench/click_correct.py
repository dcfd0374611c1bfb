"""Correct by clicking: how much a few clicks lift Dice on held-out cases, and how long a click takes.

Run: python bench/click_correct.py [path to ../shared/data] [--clicks 10] [--cases N]
The usual simulated user (issue 20): start from the shipped model's prediction; each click goes to the
interior point (largest distance to the border) of the largest error component of the region with the
lowest Dice, positive where the mask misses, negative where it is wrong; up to 10 clicks a case. The
cases are the shipped model's validation cases (it did not train on them, model/card.json).
Printed: Dice per region after 0, 1, 3, 5 and 10 clicks, clicks needed to reach WT Dice .90 (NoC@90),
seconds per click (median, p95). In the same run the same clicks are applied as 5 mm 3D brush balls
(what a user does by hand today): the difference is what the AI adds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainseg_gui.core.dice import dice

REPO = Path(__file__).resolve().parents[1]
ARGS = [a for i, a in enumerate(sys.argv[1:]) if not a.startswith("--") and not sys.argv[i].startswith("--")]
DATA = Path(ARGS[0]) if ARGS else REPO.parent / "shared" / "data"
REPORT_AT = (0, 1, 3, 5, 10)
BRUSH_RADIUS_MM = 2.5  # a 5 mm ball


def option(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def next_click(regions: np.ndarray, truth: np.ndarray) -> tuple[tuple[int, int, int], str, bool] | None:
    """The simulated user's next click: (voxel, region, positive), or None when nothing is wrong."""
    from brainseg_gui.core.labels import REGIONS

    scores = [dice(regions[i], truth[i]) for i in range(3)]
    for index in np.argsort(scores):
        missed, wrong = truth[index] & ~regions[index], regions[index] & ~truth[index]
        best = None
        for positive, error in ((True, missed), (False, wrong)):
            labelled, count = ndimage.label(error, structure=np.ones((3, 3, 3), bool))
            if count == 0:
                continue
            sizes = np.bincount(labelled.ravel())
            sizes[0] = 0
            largest = int(sizes.argmax())
            if best is None or sizes[largest] > best[0]:
                best = (int(sizes[largest]), positive, labelled == largest)
        if best is None:
            continue
        _, positive, component = best
        inside = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1, 1:-1]
        voxel = tuple(int(v) for v in np.unravel_index(int(inside.argmax()), inside.shape))
        return voxel, REGIONS[int(index)], positive  # type: ignore[return-value]
    return None


def brush(labels: np.ndarray, voxel, region: str, positive: bool, spacing, convention) -> np.ndarray:
    """The same click as a 5 mm ball painted by hand: add the region's label, or erase to background."""
    from brainseg_gui.core.labels import from_regions, to_regions

    regions = to_regions(labels, convention)
    axes = [(np.arange(n) - v) * s for n, v, s in zip(labels.shape, voxel, spacing)]
    ball = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
            <= BRUSH_RADIUS_MM ** 2)
    index = ("WT", "TC", "ET").index(region)
    if positive:
        regions[: index + 1, ball] = True
    else:
        regions[index:, ball] = False
    return from_regions(regions, convention)


def main() -> None:
    from brainseg_gui.core.click_refine import Click, RefineContext, apply_click
    from brainseg_gui.core.io import load_study
    from brainseg_gui.core.labels import LabelConvention, convert, to_regions
    from brainseg_gui.ml.predictor import Predictor

    clicks_per_case, max_cases = option("--clicks", 10), option("--cases", 4)
    card = json.loads((REPO / "model" / "card.json").read_text())
    names = card["training"]["validation_cases"][:max_cases]
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; cases {', '.join(names)}; "
          f"{clicks_per_case} clicks each")
    predictor = Predictor.from_model_dir(None, device="cpu")
    brats = LabelConvention.BRATS
    table: dict[str, dict[int, list[np.ndarray]]] = {"click": {}, "brush": {}}
    seconds: list[float] = []
    noc: list[int] = []
    for name in names:
        case = next(DATA.glob(f"brats20*/{name}"))
        study = load_study(case)
        truth = to_regions(convert(study.labels, study.label_convention, brats), brats)
        prediction = predictor(study, keep_probabilities=True)
        context = RefineContext.build(study.images, study.grid.spacing, prediction.probabilities)
        for method in ("click", "brush"):
            labels = prediction.labels(brats)
            reached = None
            for count in range(clicks_per_case + 1):
                regions = to_regions(labels, brats)
                scores = np.array([dice(regions[i], truth[i]) for i in range(3)])
                if count in REPORT_AT:
                    table[method].setdefault(count, []).append(scores)
                if method == "click" and reached is None and scores[0] >= 0.90:
                    reached = count
                if count == clicks_per_case:
                    break
                chosen = next_click(regions, truth)
                if chosen is None:
                    continue
                voxel, region, positive = chosen
                if method == "click":
                    start = time.perf_counter()
                    labels, _ = apply_click(labels, Click(voxel, region, positive), context, brats)
                    seconds.append(time.perf_counter() - start)
                else:
                    labels = brush(labels, voxel, region, positive, study.grid.spacing, brats)
            if method == "click":
                noc.append(reached if reached is not None else clicks_per_case + 1)
        print(f"{name}: start WT {table['click'][0][-1][0]:.3f} TC {table['click'][0][-1][1]:.3f} "
              f"ET {table['click'][0][-1][2]:.3f}; after {clicks_per_case} clicks "
              f"{' '.join(f'{v:.3f}' for v in table['click'][max(table['click'])][-1])}, brush "
              f"{' '.join(f'{v:.3f}' for v in table['brush'][max(table['brush'])][-1])}", flush=True)
    print("\nmean Dice (WT / TC / ET) after N interactions:")
    for count in sorted(table["click"]):
        click = np.mean(table["click"][count], axis=0)
        hand = np.mean(table["brush"][count], axis=0)
        print(f"  {count:>2}  clicks {click[0]:.3f} / {click[1]:.3f} / {click[2]:.3f}   "
              f"5 mm brush {hand[0]:.3f} / {hand[1]:.3f} / {hand[2]:.3f}")
    print(f"NoC@90 (WT): {', '.join(map(str, noc))} (>{clicks_per_case} = not reached); mean {np.mean(noc):.1f}")
    print(f"seconds per click: median {np.median(seconds):.2f}, p95 {np.percentile(seconds, 95):.2f} "
          f"({len(seconds)} clicks, 240x240x155 cases)")


if __name__ == "__main__":
    main()
