"""The fine-tune window on real cases, driven as a user would: choose cases, start, watch, keep, roll back.

    python bench/finetune_walkthrough.py [--epochs 2] [--steps 2] [--batch 2] [--shots DIR]

(offscreen by default; under Xvfb, `xvfb-run -a env QT_QPA_PLATFORM=xcb python bench/...`, to watch).
Starts from the shipped model, trains on two cases the shipped model never saw (BraTS2021_00014,
Brats18_2013_2_1) and validates on two others (BraTS2021_00019, Brats18_TCIA03_265_1), on the CPU.
The models folder and app state live in a temporary folder, so the user's own models are untouched.
Prints the time to the first plotted epoch and to the end, the before/after table, the notices, the
active model after Keep and after Rollback; saves screenshots into --shots (default screenshots/issue6).
A short run (a few steps of batch 2) is a walkthrough of the window, not a fine-tune worth keeping.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BRAINSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
TRAIN = ("brats2021/BraTS2021_00014", "brats2018/Brats18_2013_2_1")
VAL = ("brats2021/BraTS2021_00019", "brats2018/Brats18_TCIA03_265_1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="training steps per epoch")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--shots", type=Path, default=REPO / "screenshots" / "issue6")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scratch = Path(tempfile.mkdtemp(prefix="brainseg-finetune-walkthrough-"))
    os.environ["BRAINSEG_MODELS_DIR"] = str(scratch / "models")
    os.environ["BRAINSEG_STATE_DIR"] = str(scratch / "state")

    from brainseg_gui.core.cases import find_case
    from brainseg_gui.ui.app import make_application
    from brainseg_gui.ui.finetune_cases import TRAIN as TRAIN_SIDE
    from brainseg_gui.ui.finetune_cases import VAL as VAL_SIDE
    from brainseg_gui.ui.finetune_panel import FinetunePanel
    from brainseg_gui.ui.models_dialog import ModelsDialog

    app = make_application()
    panel = FinetunePanel()
    panel.cases.add_cases(TRAIN_SIDE, [find_case(DATA / c) for c in TRAIN])
    panel.cases.add_cases(VAL_SIDE, [find_case(DATA / c) for c in VAL])
    panel.set_settings(epochs=args.epochs, batch_size=args.batch, steps_per_epoch=args.steps, device="cpu")
    panel.resize(1280, 780)
    panel.show()
    args.shots.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if not panel.start():
        print("could not start:", panel.message.text(), file=sys.stderr)
        return 1
    first_epoch = None
    while panel.state == "running":
        app.processEvents()
        time.sleep(0.05)
        if first_epoch is None and panel.plots.points()["G"][0]:
            first_epoch = time.monotonic() - started
            panel.grab().save(str(args.shots / "real_finetune_running.png"))
    total = time.monotonic() - started
    print(f"first epoch plotted after {first_epoch or float('nan'):.0f} s; run ended ({panel.state}) after {total:.0f} s")
    print(panel.device_label.text())
    print("region  dice_before  dice_after  delta  hd95_before  hd95_after")
    for row in range(3):
        print("  ".join(f"{panel.cell(row, column):>10}" for column in range(6)))
    print(panel.result_box.summary.text())
    if panel.notice_label.text():
        print("notices:", panel.notice_label.text().replace("<br>", " | "))
    panel.grab().save(str(args.shots / "real_finetune_finished.png"))
    if panel.result is None:
        print(panel.message.text())
        return 1
    entry = panel.keep()
    print("after Keep, active model:", panel.registry.active().name)
    dialog = ModelsDialog(panel.registry)
    dialog.show()
    dialog.select(entry.name)
    app.processEvents()
    dialog.grab().save(str(args.shots / "real_models_dialog.png"))
    dialog.rollback()
    print("after Rollback, active model:", panel.registry.active().name)
    print(f"screenshots in {args.shots}; models folder {scratch / 'models'}")
    return 0


if __name__ == "__main__":  # the training process is spawned: this guard is required
    sys.exit(main())
