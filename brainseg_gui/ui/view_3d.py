"""The 3D view: WT/TC/ET surfaces, an optional translucent brain, the current slice planes (VTK),
and an R/L A/P S/I orientation cube in the lower-left corner (`orientation_marker`).

Meshes are built by `meshing.region_meshes` in a worker. Where no OpenGL is available (offscreen
Qt without OSMesa, a display without GLX, BRAINSEG_NO_3D=1) the panel says so instead of failing.
Mouse: left drag rotates, middle drag pans, wheel or right drag zooms.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.meshing import Mesh
from brainseg_gui.app.region_codes import regions_of_code
from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.ui.overlay import COLOURS
from brainseg_gui.ui.viewer_state import ViewerState
from brainseg_gui.ui.workers import Job, JobRunner

log = logging.getLogger(__name__)

#: Opacity of each surface at the slider's full value: outer surfaces see-through, ET solid.
BASE_OPACITY = {"WT": 0.35, "TC": 0.6, "ET": 1.0}
BRAIN_OPACITY = 0.12
#: The slice planes follow the crosshair this long after it stops moving: a software-OpenGL render of
#: the surfaces takes a few hundred ms, which must not run at every step while scrolling.
PLANE_RENDER_DELAY_MS = 150
#: Slice plane outlines: colours no region uses.
PLANE_COLOURS = {"axial": (0.95, 0.85, 0.2), "coronal": (0.95, 0.35, 0.95), "sagittal": (0.3, 0.9, 0.95)}


def load_vtk(*, progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> None:
    """Import the VTK modules the 3D view and the meshing use, in a worker: the first import takes
    about a second, which would otherwise freeze the window (the view is built on the GUI thread)."""
    progress(0.0, "Loading VTK")
    import vtkmodules.vtkFiltersSources
    import vtkmodules.vtkInteractionStyle
    import vtkmodules.vtkInteractionWidgets
    import vtkmodules.vtkRenderingAnnotation
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - registers the OpenGL backend
    from vtkmodules.qt import QVTKRenderWindowInteractor  # noqa: F401

    from brainseg_gui.app import meshing  # noqa: F401 - marching cubes (scikit-image) and the smoothing

    progress(1.0, "VTK loaded")


def polydata(mesh: Mesh) -> Any:
    """A mesh of app/meshing.py as VTK polydata (points, triangles, point normals) for a mapper."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    out = vtkPolyData()
    if mesh.is_empty:
        return out
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(mesh.vertices, dtype=np.float32), deep=True))
    cells = vtkCellArray()
    offsets = np.arange(0, 3 * len(mesh.faces) + 1, 3, dtype=np.int64)
    cells.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_to_vtkIdTypeArray(np.ascontiguousarray(mesh.faces.ravel(), dtype=np.int64), deep=True))
    out.SetPoints(points)
    out.SetPolys(cells)
    normals = numpy_to_vtk(np.ascontiguousarray(mesh.normals, dtype=np.float32), deep=True)
    normals.SetName("Normals")
    out.GetPointData().SetNormals(normals)
    return out


def gl_problem() -> str | None:
    """Why VTK cannot render here (None when it can); decides the render window kind for offscreen Qt."""
    if os.environ.get("BRAINSEG_NO_3D"):
        return "the 3D view is turned off (BRAINSEG_NO_3D is set)"
    platform = QGuiApplication.platformName()
    if platform == "offscreen":
        if ctypes.util.find_library("OSMesa") is None:
            return "no OpenGL on the offscreen platform (install OSMesa, or run on a display)"
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
        return None
    if platform == "minimal":
        return "no OpenGL on Qt's minimal platform"
    surface = QOffscreenSurface()
    surface.create()
    context = QOpenGLContext()
    if not context.create() or not context.makeCurrent(surface):
        return f"this display ({platform}) offers no OpenGL context"
    context.doneCurrent()
    return None


class View3D(QWidget):
    def __init__(self, state: ViewerState, runner: JobRunner, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.volume: DisplayVolume | None = None
        self.prediction: np.ndarray | None = None
        self.meshes: dict = {}
        self._job: Job | None = None
        self._job_resets_camera = False  # the running surface job was asked to reset the camera
        self.actors: dict = {}
        self.plane_actors: dict = {}
        self.plane_sources: dict = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.problem = gl_problem()
        self.vtk_widget = None
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(PLANE_RENDER_DELAY_MS)
        self._render_timer.timeout.connect(self.render)
        if self.problem is None:
            try:
                self._build_vtk(layout)
            except Exception as error:
                log.exception("3D view unavailable")
                self.problem = f"OpenGL failed: {error}"
        if self.problem is not None:
            message = QLabel(f"3D view unavailable: {self.problem}.\nThe slice views work as usual.")
            message.setWordWrap(True)
            message.setAlignment(Qt.AlignmentFlag.AlignCenter)
            message.setObjectName("view3dMessage")
            layout.addWidget(message)
            self.message = message
            return
        self._build_controls(layout)
        state.crosshair_changed.connect(lambda _v: self._place_planes())
        state.overlay_changed.connect(self._apply_style)

    @property
    def available(self) -> bool:
        return self.problem is None

    # ---- building ------------------------------------------------------------------------
    def _build_vtk(self, layout: QVBoxLayout) -> None:
        import vtkmodules.vtkInteractionStyle
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - registers the OpenGL backend
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
        from vtkmodules.vtkRenderingCore import vtkRenderer

        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.vtk_widget.setMinimumSize(200, 200)
        window = self.vtk_widget.GetRenderWindow()
        if QGuiApplication.platformName() == "offscreen":
            window.SetOffScreenRendering(1)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.06, 0.06, 0.08)
        window.AddRenderer(self.renderer)
        self.vtk_widget.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self.vtk_widget.Initialize()
        from brainseg_gui.ui.orientation_marker import orientation_marker

        self.orientation_marker = orientation_marker(window.GetInteractor())
        layout.addWidget(self.vtk_widget, 1)

    def _build_controls(self, layout: QVBoxLayout) -> None:
        row = QHBoxLayout()
        self.source = QComboBox()
        self.source.addItems(["Prediction", "Ground truth"])
        self.source.setToolTip("Whose surfaces to show")
        self.source.currentIndexChanged.connect(lambda _i: self._rebuild())
        row.addWidget(self.source)
        row.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(5, 100)
        self.opacity.setValue(100)
        self.opacity.valueChanged.connect(lambda _v: self._apply_style())
        row.addWidget(self.opacity, 1)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.brain_check = QCheckBox("Brain")
        self.brain_check.setChecked(True)
        self.brain_check.toggled.connect(lambda _on: self._rebuild())
        self.planes_check = QCheckBox("Slice planes")
        self.planes_check.setChecked(True)
        self.planes_check.toggled.connect(lambda _on: self._place_planes(render=True))
        reset = QPushButton("Reset camera")
        reset.clicked.connect(lambda _checked=False: self.reset_camera())
        shot = QPushButton("Screenshot…")
        shot.clicked.connect(self._ask_screenshot)
        for widget in (self.brain_check, self.planes_check, reset, shot):
            row.addWidget(widget)
        layout.addLayout(row)
        self.status = QLabel("")
        layout.addWidget(self.status)

    # ---- data ----------------------------------------------------------------------------
    def set_volume(self, volume: DisplayVolume | None) -> None:
        self.volume = volume
        self.prediction = None
        if self.available:
            self._remove_surfaces()  # the previous study's must not stand in while this one's build
            self._place_planes(render=True)
            self._rebuild(reset_camera=True)

    def set_prediction(self, regions_ras: np.ndarray | None) -> None:
        """(3, x, y, z) bool RAS regions of a new segmentation: shown at once."""
        self.prediction = regions_ras
        if self.available:
            self.source.blockSignals(True)
            self.source.setCurrentIndex(0)
            self.source.blockSignals(False)
            self._rebuild()

    def _regions(self) -> tuple[np.ndarray | None, str]:
        if self.volume is None:
            return None, ""
        want_truth = self.source.currentIndex() == 1
        truth = self.volume.truth_code
        if (want_truth or self.prediction is None) and truth is not None:
            return regions_of_code(truth), "ground truth"
        if self.prediction is not None:
            return self.prediction, "prediction"
        return None, ""

    def _rebuild(self, reset_camera: bool = False) -> None:
        if self._job is not None:
            self._job.cancel()
            # a new study's camera reset must survive a rebuild that cancels its job (a restored
            # or new mask arriving before the study's surfaces are built left the view black)
            reset_camera = reset_camera or self._job_resets_camera
        regions, whose = self._regions()
        if self.volume is None:
            self._show({}, "", reset_camera)
            return
        volume = self.volume
        if regions is None:
            regions = np.zeros((3, *volume.shape), dtype=bool)
            whose = "no segmentation yet"
        self.source.blockSignals(True)  # the combo says whose surfaces are shown
        self.source.setCurrentIndex(1 if whose == "ground truth" else 0)
        self.source.blockSignals(False)
        brain = volume.brain if self.brain_check.isChecked() else None
        from brainseg_gui.app.meshing import region_meshes

        def build(**kw: Any) -> dict[str, Any]:
            return {name: polydata(mesh) for name, mesh in region_meshes(regions, volume.spacing, brain, **kw).items()}

        self.status.setText("Building surfaces…")
        job = self.runner.start(
            "Building 3D surfaces", build,
            on_result=lambda meshes: self._show(meshes, whose, reset_camera) if job is self._job else None,
            on_error=lambda error: self.status.setText(f"Surfaces failed: {error}") if job is self._job else None)
        self._job = job
        self._job_resets_camera = reset_camera

    def _show(self, meshes: dict, whose: str, reset_camera: bool) -> None:
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        self._job = None
        self._remove_surfaces()
        self.meshes = dict(meshes)
        for name, mesh in meshes.items():
            if mesh.GetNumberOfPoints() == 0:
                continue
            mapper = vtkPolyDataMapper()
            mapper.SetInputData(mesh)
            mapper.ScalarVisibilityOff()  # colour by the actor, not by (label) scalars
            actor = vtkActor()
            actor.SetMapper(mapper)
            self.renderer.AddActor(actor)
            self.actors[name] = actor
        self.status.setText(f"Surfaces: {whose}" if whose else "")
        self._apply_style(render=False)
        self._place_planes(render=False)
        if reset_camera:
            self.reset_camera(render=False)
        self.render()  # once for all of the above

    def _remove_surfaces(self) -> None:
        for actor in self.actors.values():
            self.renderer.RemoveActor(actor)
        self.actors = {}
        self.meshes = {}

    def _apply_style(self, render: bool = True) -> None:
        scale = self.opacity.value() / 100.0
        for name, actor in self.actors.items():
            prop = actor.GetProperty()
            if name == "brain":
                prop.SetColor(0.85, 0.82, 0.78)
                prop.SetOpacity(BRAIN_OPACITY)
                continue
            prop.SetColor(*(c / 255.0 for c in COLOURS[name]))
            prop.SetOpacity(BASE_OPACITY[name] * scale)
            prop.SetSpecular(0.2)
            actor.SetVisibility(name in self.state.look.visible)
        if render:
            self.render()

    def _place_planes(self, render: bool | None = None) -> None:
        """Move the slice planes to the crosshair. render None: a render once the crosshair has
        stopped moving for a moment (scrolling through slices must not wait for the 3D picture)."""
        if self.volume is None:
            return
        from vtkmodules.vtkFiltersSources import vtkPlaneSource
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        size = [n * s for n, s in zip(self.volume.shape, self.volume.spacing)]
        centre = [(c + 0.5) * s for c, s in zip(self.state.crosshair, self.volume.spacing)]
        corners = {  # origin, point1, point2 of each plane through the crosshair
            "axial": ((0, 0, centre[2]), (size[0], 0, centre[2]), (0, size[1], centre[2])),
            "coronal": ((0, centre[1], 0), (size[0], centre[1], 0), (0, centre[1], size[2])),
            "sagittal": ((centre[0], 0, 0), (centre[0], size[1], 0), (centre[0], 0, size[2])),
        }
        for plane, (origin, p1, p2) in corners.items():
            actor = self.plane_actors.get(plane)
            if actor is None:
                source = vtkPlaneSource()
                mapper = vtkPolyDataMapper()
                mapper.SetInputConnection(source.GetOutputPort())
                actor = vtkActor()
                actor.SetMapper(mapper)
                actor.GetProperty().SetRepresentationToWireframe()
                actor.GetProperty().SetColor(*PLANE_COLOURS[plane])
                actor.GetProperty().SetLineWidth(2)
                self.plane_sources[plane] = source
                self.renderer.AddActor(actor)
                self.plane_actors[plane] = actor
            source = self.plane_sources[plane]
            source.SetOrigin(*origin)
            source.SetPoint1(*p1)
            source.SetPoint2(*p2)
            actor.SetVisibility(self.planes_check.isChecked())
        if render is None:
            self._render_timer.start()  # (re)started: one render after the last move
        elif render:
            self.render()

    # ---- camera and output ---------------------------------------------------------------
    def reset_camera(self, render: bool = True) -> None:
        """Look at the head from the front, superior up (the patient's right on the screen's left)."""
        if not self.available:
            return
        camera = self.renderer.GetActiveCamera()
        if self.volume is not None:
            size = [n * s for n, s in zip(self.volume.shape, self.volume.spacing)]
            centre = [v / 2 for v in size]
            camera.SetFocalPoint(*centre)
            camera.SetPosition(centre[0] - 0.3 * size[0], centre[1] + 3 * size[1], centre[2] + 0.5 * size[2])
            camera.SetViewUp(0, 0, 1)
        self.renderer.ResetCamera()
        camera.Zoom(1.5)  # ResetCamera fits the slice planes (the whole grid); the head is smaller
        if render:
            self.render()

    def render(self) -> None:
        if self.available:
            self._render_timer.stop()  # a pending deferred render is served by this one
            self.vtk_widget.GetRenderWindow().Render()

    def render_image(self) -> np.ndarray:
        """The current picture as (height, width, 3) uint8, top row first."""
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        self.render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.vtk_widget.GetRenderWindow())
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
        return np.ascontiguousarray(pixels[::-1, :, :3])

    def save_screenshot(self, path: Path | str) -> Path:
        """The 3D picture as PNG, written atomically."""
        from vtkmodules.vtkIOImage import vtkPNGWriter
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        self.render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.vtk_widget.GetRenderWindow())
        grab.ReadFrontBufferOff()

        def save(temporary: Path) -> None:
            writer = vtkPNGWriter()
            writer.SetFileName(str(temporary))
            writer.SetInputConnection(grab.GetOutputPort())
            writer.Write()

        return write_atomic(Path(path), save)

    def _ask_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the 3D view", "brainseg-3d.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    def close(self) -> bool:
        self._render_timer.stop()
        if self._job is not None:  # surfaces still building: their result must not reach a closed view
            self._job.cancel()
            self._job = None
        if self.vtk_widget is not None:
            self.orientation_marker.SetEnabled(0)  # its renderer goes before the window it draws in
            self.vtk_widget.Finalize()
        return super().close()
