"""The 3D view's orientation marker: a cube labelled R/L, A/P, S/I in a corner, turning with the camera.

The 3D scene is in RAS millimetres (x to the patient's Right, y Anterior, z Superior), so the cube's
+x face says R, +y A, +z S. A `vtkOrientationMarkerWidget` draws it in its own small renderer on the
same render window, so it works wherever the 3D view renders (Xvfb, OSMesa offscreen).
"""

from __future__ import annotations

from typing import Any

#: Lower-left corner of the render window the marker takes, as (xmin, ymin, xmax, ymax) fractions.
VIEWPORT = (0.0, 0.0, 0.2, 0.2)
FACE_LABELS = {"XPlus": "R", "XMinus": "L", "YPlus": "A", "YMinus": "P", "ZPlus": "S", "ZMinus": "I"}


def orientation_marker(interactor: Any) -> Any:
    """An enabled, non-interactive orientation marker widget on a render window's interactor.

    Keep the returned widget referenced: VTK drops the marker when the Python object goes.
    """
    from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
    from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

    cube = vtkAnnotatedCubeActor()
    for face, text in FACE_LABELS.items():
        getattr(cube, f"Set{face}FaceText")(text)
    cube.SetFaceTextScale(0.6)
    # R/L and A/P read upright with S up (VTK's default); S and I upright with A up
    cube.SetZFaceTextRotation(90)
    cube.GetCubeProperty().SetColor(0.25, 0.27, 0.32)
    cube.GetTextEdgesProperty().SetColor(0.8, 0.8, 0.8)
    cube.GetTextEdgesProperty().SetLineWidth(1)
    for axis, colour in (("X", (1.0, 0.45, 0.45)), ("Y", (0.5, 0.9, 0.5)), ("Z", (0.5, 0.7, 1.0))):
        for side in ("Plus", "Minus"):
            getattr(cube, f"Get{axis}{side}FaceProperty")().SetColor(*colour)
    widget = vtkOrientationMarkerWidget()
    widget.SetOrientationMarker(cube)
    widget.SetInteractor(interactor)
    widget.SetViewport(*VIEWPORT)
    widget.SetEnabled(1)
    widget.InteractiveOff()
    return widget
