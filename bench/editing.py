"""Editing on a full real case (240x240x155): brush update time, undo memory, journal and export costs.

Prints:
- the core edit of one brush dab (2D disc and 3D sphere), and of fill / interpolation;
- the GUI update of one dab: edit + code volume + overlay refresh of the affected slice views
  (three 1x3 views at a realistic window size), with and without an immediate repaint;
- memory held by the undo history after 120 strokes (and after 150 big 3D strokes), undo/redo times;
- journal cost per stroke end (write + fsync) and the journal's size;
- comparison (Dice, changed voxels) and NIfTI export times.

The GUI figures are wall-clock times and, beside them, the CPU time the process used (all its
threads): on a shared machine the wall time grows with the load, the CPU time much less.

Usage: python bench/editing.py [CASE_DIR]   (default: ../shared/data/brats2021/BraTS2021_00003)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("BRAINSEG_NO_3D", "1")

import itertools

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2021" / "BraTS2021_00003"


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {1000 * statistics.median(values):.2f} ms, p95 {1000 * p95:.2f} ms (n={len(values)})"


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def stroke_paths(rng: np.random.Generator, centre: tuple[int, int, int], count: int) -> list[list[tuple[int, int, int]]]:
    """Mouse paths of `count` strokes: 15 positions each, a few voxels apart, near the tumour."""
    paths = []
    for _ in range(count):
        start = np.array(centre) + rng.integers(-25, 26, 3) * np.array([1, 1, 0]) + [0, 0, rng.integers(-20, 21)]
        steps = rng.integers(-3, 4, (15, 3)) * np.array([1, 1, 0])
        points = np.clip(start + np.cumsum(steps, axis=0), 0, [239, 239, 154])
        paths.append([tuple(int(v) for v in p) for p in points])
    return paths


def core_bench(study, labels, centre) -> None:
    from brainseg_gui.core.edit_session import EditSession
    from brainseg_gui.core.journal import Journal

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        session = EditSession(labels, study.grid)
        journal = Journal.create(Path(folder) / "bench.bsjournal", session, {"case_id": study.case_id})
        session.recorder = journal
        dab_2d, dab_3d, ends = [], [], []
        for number, path in enumerate(stroke_paths(rng, centre, 120)):
            label = (1, 2, 4, 0)[number % 4]
            session.begin_stroke("brush")
            for a, b in itertools.pairwise(path):
                start = time.perf_counter()
                if number % 6 == 5:
                    session.paint_sphere(a, 6.0, label, to=b)
                    dab_3d.append(time.perf_counter() - start)
                else:
                    session.paint_disc(2, a, 5.0, label, to=b)
                    dab_2d.append(time.perf_counter() - start)
            start = time.perf_counter()
            session.end_stroke()
            ends.append(time.perf_counter() - start)
        print(f"core dab, 2D disc r=5 mm:   {ms(dab_2d)}")
        print(f"core dab, 3D sphere r=6 mm: {ms(dab_3d)}")
        print(f"stroke end (net delta + journal write + fsync): {ms(ends)}")
        print(f"undo history after {session.undo_depth} strokes: {session.undo_bytes / 1e6:.2f} MB "
              f"(mask itself {session.labels.nbytes / 1e6:.1f} MB; a full copy per stroke would be "
              f"{session.undo_depth * session.labels.nbytes / 1e9:.2f} GB)")
        changed = sum(d.size for d in session._undo)
        print(f"  {changed:,} changed voxels stored, {session.undo_bytes / max(changed, 1):.1f} bytes each")
        start = time.perf_counter()
        undo_times = []
        while session.can_undo:
            t = time.perf_counter()
            session.undo()
            undo_times.append(time.perf_counter() - t)
        assert np.array_equal(session.labels, labels), "undoing every stroke must give back the start"
        print(f"undo of one stroke: {ms(undo_times)}; all {len(undo_times)} in {time.perf_counter() - start:.3f} s")
        redo_times = []
        while session.can_redo:
            t = time.perf_counter()
            session.redo()
            redo_times.append(time.perf_counter() - t)
        print(f"redo of one stroke: {ms(redo_times)}")
        journal.close()
        session.recorder = None
        size = (Path(folder) / "bench.bsjournal").stat().st_size
        print(f"journal: {size / 1e6:.2f} MB after {len(ends)} strokes and {len(undo_times) * 2} undo/redo records")

        heavy_bench(study, labels, centre)
        import scipy.ndimage  # noqa: F401 - as the GUI does when editing starts (the first import takes 1-2 s)

        x, y, z = centre
        fills, interpolations = [], []
        for k in range(12):  # refill the tumour's class regions around its centre, another class each time
            t = time.perf_counter()
            changed_box = session.fill(2, (x, y, z + k - 6), (2, 4, 1)[k % 3])
            if changed_box is not None:
                fills.append(time.perf_counter() - t)
        session.paint_disc(2, (x, y, z - 10), 8, 4)
        session.paint_disc(2, (x + 5, y, z + 10), 12, 4)
        t = time.perf_counter()
        session.interpolate(2, z - 10, z + 10, 4)
        interpolations.append(time.perf_counter() - t)
        print(f"fill (connected region of one slice): {ms(fills)}")
        print(f"interpolation over 19 slices: {1000 * interpolations[0]:.1f} ms")
        t = time.perf_counter()
        comparison = session.comparison()
        print(f"comparison with the AI mask (Dice, changed per class): {1000 * (time.perf_counter() - t):.1f} ms "
              f"({comparison.changed:,} voxels differ)")


def heavy_bench(study, labels, centre) -> None:
    """Undo memory in a worst case: 150 strokes, each a 3D sphere of 15 mm swept 10 mm."""
    from brainseg_gui.core.edit_session import MAX_UNDO_BYTES, EditSession

    session = EditSession(labels, study.grid)
    rng = np.random.default_rng(2)
    changed = 0
    for number in range(150):
        start = np.clip(np.array(centre) + rng.integers(-30, 31, 3), 15, [224, 224, 139])
        end = start + [10, 0, 0]
        delta_box = session.paint_sphere(tuple(int(v) for v in start), 15.0, (4, 0, 2, 1)[number % 4],
                                         to=tuple(int(v) for v in end))
        changed += 0 if delta_box is None else 1
    stored = sum(d.size for d in session._undo)
    print(f"undo history after {session.undo_depth} big 3D strokes (r=15 mm): {session.undo_bytes / 1e6:.1f} MB, "
          f"{stored:,} voxels (cap {MAX_UNDO_BYTES / 1e6:.0f} MB, oldest strokes dropped beyond it)")


def gui_bench(study, labels, centre) -> None:
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.app.display_volume import DisplayVolume
    from brainseg_gui.app.editing import Editing
    from brainseg_gui.ui.view_grid import ViewGrid
    from brainseg_gui.ui.viewer_state import Tool, ViewerState

    app = QApplication.instance() or QApplication([])
    volume = DisplayVolume.from_study(study)
    state = ViewerState()
    with tempfile.TemporaryDirectory() as folder:
        controller = Editing(state, journal_folder=Path(folder))
        grid = ViewGrid(state)
        grid.resize(1050, 780)
        grid.show()
        controller.set_volume(volume)
        grid.set_volume(volume)
        state.reset(volume.shape, volume.centre(), {n: volume.window(n) for n in volume.sequences}, "t1ce")
        controller.mask_changed.connect(grid.refresh_prediction)
        controller.start(labels, model_version="bench")
        grid.set_prediction(controller.code_ras)
        app.processEvents()
        state.set_tool(Tool.BRUSH)
        state.set_brush_mm(5.0)
        x, y, z = state.crosshair
        rng = np.random.default_rng(1)
        update, painted, update_cpu, painted_cpu = [], [], [], []
        for number in range(60):
            state.set_label(("NCR", "ED", "ET")[number % 3])
            points = np.clip(np.array([x, y]) + np.cumsum(rng.integers(-3, 4, (12, 2)), axis=0) + rng.integers(-20, 21, 2),
                             0, 239)
            controller.press("axial", (int(points[0][0]), int(points[0][1]), z))
            for px, py in points[1:]:
                t, c = time.perf_counter(), time.process_time()
                controller.move((int(px), int(py), z))
                update.append(time.perf_counter() - t)
                update_cpu.append(time.process_time() - c)
                t, c = time.perf_counter(), time.process_time()
                controller.move((int(px) + 1, int(py), z))
                grid.views[0].viewport().repaint()  # what the user sees, drawn now
                painted.append(time.perf_counter() - t)
                painted_cpu.append(time.process_time() - c)
            controller.release()
            app.processEvents()
        print(f"GUI dab update (edit + code volume + overlay refresh of the views through the slice): {ms(update)}")
        print(f"  CPU time of the process: {ms(update_cpu)}")
        print(f"GUI dab update + immediate repaint of the axial view:                           {ms(painted)}")
        print(f"  CPU time of the process: {ms(painted_cpu)}")
        print(f"  (load average {load_average()} on {os.cpu_count()} CPUs while measuring; "
              f"the issue asks for a median under 16 ms)")
        controller.close_session(discard=True)
        grid.close()


def export_bench(study, labels) -> None:
    from brainseg_gui.core.export import export_nifti, provenance

    with tempfile.TemporaryDirectory() as folder:
        t = time.perf_counter()
        prov = provenance(study, labels, study.labels, model_version="bench")
        middle = time.perf_counter()
        export_nifti(Path(folder) / "out.nii.gz", labels, study, prov, convention="msd")
        print(f"provenance (comparison + source hashes): {1000 * (middle - t):.0f} ms; "
              f"NIfTI export (msd, gzip, sidecar): {1000 * (time.perf_counter() - middle):.0f} ms")


def main() -> None:
    from brainseg_gui.core.io import load_study

    case = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CASE
    study = load_study(case)
    labels = np.array(study.labels, dtype=np.uint8)
    wt = labels > 0
    centre = tuple(int(np.flatnonzero(wt.any(axis=tuple(a for a in range(3) if a != axis))).mean()) for axis in range(3))
    print(f"case {study.case_id}: {study.grid.describe()}, {int(wt.sum()):,} tumour voxels")
    core_bench(study, labels, centre)
    gui_bench(study, labels, centre)
    export_bench(study, labels)
    try:
        import resource

        print(f"peak RSS of this benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
