"""Viewer speed: cold start to a drawn study, slice change with overlays, 3D surface rebuild.

    xvfb-run -a python bench/ui.py [CASE] [--runs 3] [--steps 60] [--skip-3d]
    QT_QPA_PLATFORM=offscreen python bench/ui.py ...    (3D view end to end needs OSMesa there)

CASE defaults to ../shared/data/brats2021/BraTS2021_00003 (240x240x155, with ground truth); when it
is absent the built-in demo phantom is used instead, and the output says so. Prints, each the
median over `--runs` fresh subprocesses (the machine may be shared: single runs are noisy):

- cold start: from starting `python -c` (what the `brainseg CASE` entry point does: cli.main
  ["gui", CASE]) until the main window is shown with the case loaded AND the slice views have
  painted it (target <= 1.5 s). Split into interpreter start, Python imports on the GUI thread (and,
  overlapping, in the threads that read the study), window construction, loading, first paint. Says whether
  torch and VTK were in sys.modules at that moment (they must load lazily). Reference: a bare
  QApplication + empty QMainWindow shown and painted, started the same way.
- slice change: the 1x3 layout at 1500x900 with three overlays on (WT/TC/ET of the ground truth
  drawn as outlines and the same regions as a filled "prediction"), `--steps` single slice steps
  through the tumour; each timed from the step to the views having repainted (processEvents, then
  a forced synchronous repaint of every view). Median and p95 (target median <= 16 ms), also for
  the 2x2 layout. Reference: the numpy copies of the slices the views show.
- 3D: WT/TC/ET surfaces of the full case (`meshing.region_meshes`, target <= 1 s), also with the
  brain surface, and the 3D view end to end (set_volume -> surfaces shown and rendered) where
  OpenGL is available. Reference: bare vtkDiscreteFlyingEdges3D of the WT mask, no smoothing.

Ratios to the references are printed; nothing is asserted (timings vary with the machine's load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2021" / "BraTS2021_00003"
TARGETS = {"cold": 1.5, "slice_ms": 16.0, "mesh": 1.0}  # issue 19: cold start <= 1.5 s

# -- cold start children: `python -c` programs; T0 (time.time() just before the parent's Popen) ---------

#: Times every outermost import statement per thread (GUI thread vs. workers), so the share of
#: imports in the cold start is measured, not guessed. Costs microseconds per import statement.
_IMPORT_CLOCK = r"""
import builtins, importlib, threading, time
_T_FIRST = time.time()
_orig_import, _orig_import_module = builtins.__import__, importlib.import_module
_local, IMPORT_S, AFTER_IMPORT = threading.local(), {"main": 0.0, "workers": 0.0}, []
def _timed(fn):
    def wrapper(*args, **kwargs):
        if getattr(_local, "busy", False):
            return fn(*args, **kwargs)
        _local.busy = True
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _local.busy = False
            main = threading.current_thread() is threading.main_thread()
            IMPORT_S["main" if main else "workers"] += time.perf_counter() - started
            for callback in AFTER_IMPORT if main else ():
                callback()
    return wrapper
builtins.__import__, importlib.import_module = _timed(_orig_import), _timed(_orig_import_module)
"""

_APP_CHILD = _IMPORT_CLOCK + r"""
import json, os, sys
T0, CASE = float(sys.argv[1]), (sys.argv[2] or None)
marks = {}
cpu_marks = {}
from brainseg_gui import cli  # what the entry point imports; Qt and the viewer are imported by `gui` itself

def _watch_when_imported():
    # The main window is patched as soon as `gui` has imported it, so that this child starts exactly
    # as `brainseg CASE` does (cli first: it starts reading the study before Qt's imports).
    mw = sys.modules.get("brainseg_gui.ui.main_window")
    if mw is None or "imported" in marks:
        return
    marks["imported"], cpu_marks["imported"] = time.time(), time.process_time()
    _init = mw.MainWindow.__init__
    def _init_and_watch(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        _watched(self)
    mw.MainWindow.__init__ = _init_and_watch
AFTER_IMPORT.append(_watch_when_imported)

def _watched(self):
    marks["window"], cpu_marks["window"] = time.time(), time.process_time()
    self.study_opened.connect(lambda _volume: _opened(self))
    self.activity.progress.valueChanged.connect(lambda _v: marks.setdefault("load_started", time.time()))
def _opened(window):
    marks["loaded"], cpu_marks["loaded"] = time.time(), time.process_time()
    from PySide6.QtCore import QTimer
    QTimer.singleShot(0, lambda: _drawn(window))
def _drawn(window):
    from PySide6.QtWidgets import QApplication
    # a synchronous full repaint of every slice view: the study is on screen when it returns (no
    # processEvents here: it could run the app's later timers, e.g. the 3D view's deferred build)
    app = QApplication.instance()
    for view in window.grid.views:
        view.viewport().repaint()
    marks["drawn"] = time.time()
    mods = sys.modules
    print(json.dumps({
        "interpreter": _T_FIRST - T0, "imports_gui": IMPORT_S["main"], "imports_workers": IMPORT_S["workers"],
        "to_imported": marks["imported"] - T0, "to_window": marks["window"] - T0,
        "to_loaded": marks["loaded"] - T0, "total": marks["drawn"] - T0, "cpu": time.process_time(),
        "cpu_imported": cpu_marks["imported"], "cpu_window": cpu_marks["window"], "cpu_loaded": cpu_marks["loaded"],
        "views": len(window.grid.views), "case": window.volume.study.case_id,
        "platform": app.platformName(),
        "torch": "torch" in mods, "vtk": any(m == "vtk" or m.startswith("vtkmodules") for m in mods),
        "monai": "monai" in mods, "SimpleITK": "SimpleITK" in mods, "scipy": "scipy" in mods, "pydicom": "pydicom" in mods,
    }), flush=True)
    os._exit(0)  # the measurement is printed; skip the teardown
cli.main(["gui", CASE] if CASE else ["gui"])
"""

_REFERENCE_CHILD = _IMPORT_CLOCK + r"""
import json, os, sys
T0 = float(sys.argv[1])
from PySide6.QtWidgets import QApplication, QMainWindow, QLabel
app = QApplication(sys.argv[:1])
window = QMainWindow()
window.setCentralWidget(QLabel("reference"))
window.resize(1500, 900)
window.show()
app.processEvents()
window.repaint()
print(json.dumps({"interpreter": _T_FIRST - T0, "imports_gui": IMPORT_S["main"], "total": time.time() - T0,
                  "cpu": time.process_time()}),
      flush=True)
os._exit(0)
"""


def _run_child(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    started = time.time()
    out = subprocess.run([sys.executable, "-c", code, repr(started), *args], capture_output=True, text=True, check=False,
                         cwd=REPO, env=env, timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(lines[-1])


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def _cold_env(first_start: bool) -> dict[str, str]:
    """A private settings folder: a returning user (the welcome already seen) or a first start."""
    import tempfile

    env = dict(os.environ)
    # A returning user's Python has the modules' bytecode (written at the first run, as pip writes it
    # for installed packages); a machine set to PYTHONDONTWRITEBYTECODE would compile every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    folder = Path(tempfile.mkdtemp(prefix="brainseg-bench-"))
    env["BRAINSEG_STATE_DIR"] = str(folder / "state")
    env["XDG_CONFIG_HOME"] = str(folder / "config")  # where QSettings("BrainSeg", "BrainSeg") lives
    if not first_start:
        conf = folder / "config" / "BrainSeg" / "BrainSeg.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text("[General]\nwelcome_shown=true\n", encoding="utf-8")
    return env


def bench_cold(case: Path | None, runs: int) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "brainseg_gui")], check=True)
    app_rows, first_rows, ref_rows = [], [], []
    for _ in range(runs):  # interleaved, so all see the same load
        ref_rows.append(_run_child(_REFERENCE_CHILD, env=_cold_env(False)))
        app_rows.append(_run_child(_APP_CHILD, str(case) if case else "", env=_cold_env(False)))
        first_rows.append(_run_child(_APP_CHILD, str(case) if case else "", env=_cold_env(True)))
    first = app_rows[0]
    total, reference = _median(app_rows, "total"), _median(ref_rows, "total")
    imports = _median(app_rows, "imports_gui")
    print(f"\n== cold start to a drawn study: `brainseg {case or ''}` ({first['case']}, {first['views']} views, "
          f"Qt platform {first['platform']}; median of {runs} fresh processes; a returning user)")
    print(f"  total                         {total:6.2f} s   (target <= {TARGETS['cold']:.1f} s: "
          f"{'met' if total <= TARGETS['cold'] else 'MISSED'})   runs: "
          + ", ".join(f"{row['total']:.2f}" for row in app_rows))
    print(f"  process CPU time at that point {_median(app_rows, 'cpu'):5.2f} s   (all threads, interpreter start "
          f"excluded; reference {_median(ref_rows, 'cpu'):.2f} s)")
    print(f"  interpreter start             {_median(app_rows, 'interpreter'):6.2f} s")
    print(f"  Python imports (GUI thread)   {imports:6.2f} s   = {100 * imports / total:.0f}% of the total")
    print(f"  imports in other threads      {_median(app_rows, 'imports_workers'):6.2f} s   (the study's preload and "
          "load worker, beside the GUI thread)")
    for label, key in (("viewer imported", "imported"), ("main window built", "window"), ("study loaded", "loaded")):
        print(f"  -> {label + ' at':27}{_median(app_rows, 'to_' + key):6.2f} s   (CPU so far "
              f"{_median(app_rows, 'cpu_' + key):.2f} s)")
    print(f"  -> views painted at           {total:6.2f} s   (CPU so far {_median(app_rows, 'cpu'):.2f} s)")
    for label, rows in (("returning user", app_rows), ("first start", first_rows)):
        loaded = [name for name in ("torch", "vtk", "monai", "SimpleITK", "pydicom") if any(row[name] for row in rows)]
        print(f"  in sys.modules at that point ({label}): "
              + (", ".join(loaded) if loaded else "none of torch, VTK, monai, SimpleITK, pydicom")
              + ("" if {"torch", "vtk"} & set(loaded) else " (torch and VTK load lazily: good)"))
    print(f"  first start of a new user (the welcome dialog opens too): {_median(first_rows, 'total'):.2f} s, "
          f"CPU {_median(first_rows, 'cpu'):.2f} s   runs: " + ", ".join(f"{row['total']:.2f}" for row in first_rows))
    print(f"  reference: bare QApplication + empty QMainWindow shown: {reference:.2f} s "
          f"(imports {_median(ref_rows, 'imports_gui'):.2f} s); ratio app/reference {total / reference:.1f}x")


# -- slice change ---------------------------------------------------------------------------------------


def _load_volume(case: Path | None):
    from brainseg_gui.app import tasks
    from brainseg_gui.core.progress import CancelToken, no_progress

    if case is None:
        return tasks.open_demo(progress=no_progress, cancel=CancelToken())
    return tasks.open_study(case, progress=no_progress, cancel=CancelToken())


def child_slice(case: Path | None, steps: int) -> dict:
    import numpy as np
    from PySide6.QtCore import QEvent, QObject, QSettings
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.ui.app import make_application
    from brainseg_gui.ui.main_window import MainWindow

    app = make_application([sys.argv[0]])
    settings = QSettings(str(Path(os.environ.get("TMPDIR", "/tmp")) / "brainseg-bench.ini"),
                         QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.dock_3d.hide()  # the 3D view is measured on its own; here only the slice views
    window.resize(1500, 900)
    window.show()
    window.open_study(case) if case is not None else window.open_demo()
    deadline = time.monotonic() + 120
    while window.volume is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    volume = window.volume
    if volume is None:
        raise SystemExit(f"the study did not open: {window.last_error}")
    if volume.truth_code is None:
        raise SystemExit("the case has no ground truth: nothing to overlay")
    window.grid.set_prediction(volume.truth_code.copy())  # stands in for a prediction: same regions, filled
    window.state.set_shown("truth", True)
    window.state.set_shown("prediction", True)

    class PaintCounter(QObject):
        """Counts paint events per viewport: proves each view really repainted within a step."""

        def __init__(self) -> None:
            super().__init__()
            self.counts: dict[int, int] = {}

        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.Paint:
                self.counts[id(obj)] = self.counts.get(id(obj), 0) + 1
            return False

    counter = PaintCounter()
    results = {}
    z_hits = np.flatnonzero(volume.truth_code.any(axis=(0, 1)))
    for layout in ("1x3", "2x2", "1x3+3D"):
        if layout == "1x3+3D" and not _show_3d(window):  # the default window: 3D dock with surfaces
            break
        window.set_layout(layout.split("+")[0], "axial")
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)  # as the event loop would
        app.processEvents()
        viewports = [view.viewport() for view in window.grid.views]
        for viewport in viewports:
            viewport.installEventFilter(counter)
        window.move_crosshair((*volume.centre()[:2], int(z_hits[0])))
        app.processEvents()
        timings: dict[str, list[float]] = {"app": [], "forced": [], "copy": [], "cpu": []}
        unpainted = 0
        direction = 1
        for step in range(2 * steps):
            forced = step % 2 == 1  # alternate: as the app paints / plus a forced full repaint
            z = window.state.crosshair[2]
            if not z_hits[0] <= z + direction <= z_hits[-1]:
                direction = -direction
            counter.counts.clear()
            began, began_cpu = time.perf_counter(), time.process_time()
            window.state.step_slice("axial", direction)
            QApplication.processEvents()  # delivers the views' update requests: they paint here
            for viewport in viewports:
                if forced or id(viewport) not in counter.counts:
                    viewport.repaint()
            elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
            unpainted += sum(id(viewport) not in counter.counts for viewport in viewports) if not forced else 0
            timings["forced" if forced else "app"].append(elapsed)
            if not forced:
                timings["cpu"].append(cpu)
            # reference: copying out the slices the views show (image + 2 overlay codes, 3 planes)
            x, y, z = window.state.crosshair
            began = time.perf_counter()
            for array in (volume.images[window.state.sequence], volume.truth_code, window.grid.prediction):
                np.ascontiguousarray(array[:, :, z]), np.ascontiguousarray(array[:, y, :])
                np.ascontiguousarray(array[x, :, :])
            timings["copy"].append(time.perf_counter() - began)
        app_ms = sorted(1000 * t for t in timings["app"])
        forced_ms = sorted(1000 * t for t in timings["forced"])
        results[layout] = {
            "median_ms": statistics.median(app_ms), "p95_ms": _p95(app_ms),
            "forced_median_ms": statistics.median(forced_ms), "forced_p95_ms": _p95(forced_ms),
            "copy_ms": 1000 * statistics.median(timings["copy"]),
            "cpu_median_ms": 1000 * statistics.median(timings["cpu"]),
            "cpu_p95_ms": _p95(sorted(1000 * t for t in timings["cpu"])),
            "views": len(viewports), "unpainted_per_step": unpainted / steps,
        }
    results["platform"] = app.platformName()
    results["layouts"] = [name for name in ("1x3", "2x2", "1x3+3D") if name in results]
    results["case"] = volume.study.case_id
    return results


def _p95(sorted_values: list[float]) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(0.95 * (len(sorted_values) - 1)))]


def _show_3d(window) -> bool:
    """Show the 3D dock and wait until its surfaces are up; False where VTK cannot render here."""
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.ui.view_3d import gl_problem

    if gl_problem() is not None:
        return False
    window.dock_3d.show()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (window.view_3d is None or "WT" not in window.view_3d.actors):
        QApplication.processEvents()
        time.sleep(0.01)
    return window.view_3d is not None and "WT" in window.view_3d.actors


def bench_slice(case: Path | None, runs: int, steps: int) -> None:
    rows = [_run_child_module("slice", case, "--steps", str(steps)) for _ in range(runs)]
    print(f"\n== slice change with three overlays ({rows[0]['case']}, Qt platform {rows[0]['platform']}; "
          f"{steps} axial steps through the tumour per process, median of {runs} processes)")
    print("  WT/TC/ET of the ground truth as outlines + the same regions filled as the prediction layer")
    for layout in rows[0]["layouts"]:
        def med(key: str, layout: str = layout) -> float:
            return statistics.median(row[layout][key] for row in rows)

        median, copy = med("median_ms"), med("copy_ms")
        target = f"  (target <= {TARGETS['slice_ms']:.0f} ms: {'met' if median <= TARGETS['slice_ms'] else 'MISSED'})" \
            if layout == "1x3" else ""
        print(f"  {layout} ({rows[0][layout]['views']} views, 1500x900 window): step -> views repainted "
              f"median {median:5.1f} ms, p95 {med('p95_ms'):5.1f} ms{target}   runs: "
              + ", ".join(f"{row[layout]['median_ms']:.1f}" for row in rows))
        print(f"      process CPU time per step (all threads; ~what an idle machine would take): median "
              f"{med('cpu_median_ms'):5.1f} ms, p95 {med('cpu_p95_ms'):5.1f} ms")
        print(f"      with a forced full repaint of every view as well: median {med('forced_median_ms'):5.1f} ms, "
              f"p95 {med('forced_p95_ms'):5.1f} ms; views left unpainted by the event loop per step: "
              f"{max(row[layout]['unpainted_per_step'] for row in rows):.2f} (then repainted by force)")
        print(f"      reference: numpy copies of the shown slices {copy:.3f} ms; ratio {median / copy:.0f}x")


# -- 3D -------------------------------------------------------------------------------------------------


def child_mesh(case: Path | None) -> dict:
    import numpy as np
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

    from brainseg_gui.app.meshing import region_meshes
    from brainseg_gui.app.region_codes import regions_of_code

    volume = _load_volume(case)
    regions = regions_of_code(volume.truth_code)
    out: dict = {"case": volume.study.case_id, "shape": list(volume.shape)}
    began = time.perf_counter()
    meshes = region_meshes(regions, volume.spacing)
    out["regions_s"] = time.perf_counter() - began
    out["points"] = {name: len(mesh.vertices) for name, mesh in meshes.items()}
    began = time.perf_counter()
    region_meshes(regions, volume.spacing, volume.brain)
    out["with_brain_s"] = time.perf_counter() - began

    began = time.perf_counter()
    padded = np.pad(regions[0], 1).astype(np.uint8)
    image = vtkImageData()
    image.SetDimensions(*padded.shape)
    image.GetPointData().SetScalars(numpy_to_vtk(padded.ravel(order="F"), deep=True))
    surface = vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    surface.Update()
    out["reference_s"] = time.perf_counter() - began
    out["view"] = _view_3d_end_to_end(volume)
    return out


def _view_3d_end_to_end(volume) -> dict | str:
    """set_volume -> the worker's surfaces shown and rendered, in the real View3D widget."""
    from PySide6.QtWidgets import QApplication

    from brainseg_gui.ui.app import make_application
    from brainseg_gui.ui.view_3d import View3D, gl_problem
    from brainseg_gui.ui.viewer_state import ViewerState
    from brainseg_gui.ui.workers import JobRunner

    app = make_application([sys.argv[0]])
    problem = gl_problem()
    if problem is not None:
        return problem
    state = ViewerState()
    state.reset(volume.shape, volume.centre(), {}, "t1ce")
    view = View3D(state, JobRunner())
    view.resize(600, 600)
    view.show()
    app.processEvents()
    if not view.available:
        return view.problem or "unavailable"
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        view.set_volume(volume)
        while view._job is not None:
            QApplication.processEvents()
            time.sleep(0.002)
        view.render()
        timings.append(time.perf_counter() - began)
    return {"seconds": statistics.median(timings), "actors": sorted(view.actors)}


def bench_mesh(case: Path | None, runs: int) -> None:
    rows = [_run_child_module("mesh", case) for _ in range(runs)]
    regions = statistics.median(row["regions_s"] for row in rows)
    brain = statistics.median(row["with_brain_s"] for row in rows)
    reference = statistics.median(row["reference_s"] for row in rows)
    print(f"\n== 3D surfaces ({rows[0]['case']}, {'x'.join(map(str, rows[0]['shape']))}; median of {runs} processes)")
    print(f"  WT/TC/ET meshes (smoothed)        {regions:5.2f} s (target <= {TARGETS['mesh']:.0f} s: "
          f"{'met' if regions <= TARGETS['mesh'] else 'MISSED'})   points "
          + ", ".join(f"{k} {v}" for k, v in rows[0]["points"].items()))
    print(f"  WT/TC/ET + brain surface          {brain:5.2f} s (what the 3D view builds by default)")
    views = [row["view"] for row in rows if isinstance(row["view"], dict)]
    if views:
        print(f"  3D view end to end (+ render)     {statistics.median(v['seconds'] for v in views):5.2f} s   "
              f"actors: {', '.join(views[0]['actors'])}")
    else:
        print(f"  3D view end to end: not measured ({rows[0]['view']})")
    print(f"  reference: bare flying edges of WT {reference:5.3f} s; ratio meshes/reference {regions / reference:.0f}x")


# -- plumbing -------------------------------------------------------------------------------------------


def _run_child_module(kind: str, case: Path | None, *extra: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(case) if case else "-", *extra]
    out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} child failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", nargs="?", default=str(DEFAULT_CASE), help="a case (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement (median)")
    parser.add_argument("--steps", type=int, default=60, help="slice steps per process (>= 50)")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-slice", action="store_true")
    parser.add_argument("--skip-3d", action="store_true")
    parser.add_argument("--child", choices=("slice", "mesh"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    case: Path | None = None if args.case == "-" else Path(args.case)
    if args.child:
        result = child_slice(case, args.steps) if args.child == "slice" else child_mesh(case)
        print(json.dumps(result), flush=True)
        os._exit(0)
    if case is not None and not case.exists():
        print(f"{case} not found: using the built-in demo phantom instead")
        case = None
    print(f"BrainSeg viewer benchmark: case {case or 'demo phantom'}, Qt platform "
          f"{os.environ.get('QT_QPA_PLATFORM') or 'default'}, DISPLAY={os.environ.get('DISPLAY', '')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_cold:
        bench_cold(case, args.runs)
    if not args.skip_slice:
        bench_slice(case, args.runs, max(args.steps, 50))
    if not args.skip_3d:
        bench_mesh(case, args.runs)


if __name__ == "__main__":
    main()
