"""Fixtures for the viewer tests: a small hand-made study whose anatomy is known, settings in tmp.

The toy study is stored LPS (file axis i points to the patient's Left, j Posterior) with thick
4 mm slices, so the tests prove the views reorient and keep the aspect whatever the file does.
Markers (world RAS): a bright block at the patient's right-anterior, the tumour right-anterior-up.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.study import SEQUENCES, Grid, Study

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "screenshots"
TOY_SHAPE = (40, 48, 20)
TOY_SPACING = (1.5, 1.5, 4.0)
#: Tumour centre and radius in RAS mm relative to the grid centre, and the nested label radii.
TUMOUR_OFFSET_MM = (12.0, 12.0, 8.0)
TUMOUR_RADII_MM = {2: 12.0, 1: 8.0, 4: 5.0}  # ED, NCR, ET: outer to inner


def _toy_affine() -> np.ndarray:
    sx, sy, sz = TOY_SPACING
    nx, ny, nz = TOY_SHAPE
    # i -> Left, j -> Posterior, k -> Superior; origin so that the grid centre is at world 0
    return np.array([[-sx, 0, 0, sx * (nx - 1) / 2],
                     [0, -sy, 0, sy * (ny - 1) / 2],
                     [0, 0, sz, -sz * (nz - 1) / 2],
                     [0, 0, 0, 1.0]])


def toy_arrays() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Images, BraTS labels (1/2/4) and the affine of the toy study, in file (LPS) order."""
    affine = _toy_affine()
    i, j, k = np.meshgrid(*[np.arange(n) for n in TOY_SHAPE], indexing="ij")
    world = np.stack([affine[a, 0] * i + affine[a, 1] * j + affine[a, 2] * k + affine[a, 3] for a in range(3)])
    brain = ((world[0] / 28) ** 2 + (world[1] / 34) ** 2 + (world[2] / 36) ** 2) < 1
    tumour_distance = np.sqrt(sum((world[a] - TUMOUR_OFFSET_MM[a]) ** 2 for a in range(3)))
    labels = np.zeros(TOY_SHAPE, dtype=np.uint8)
    for value, radius in TUMOUR_RADII_MM.items():
        labels[tumour_distance < radius] = value
    images = {}
    for index, name in enumerate(SEQUENCES):
        image = np.where(brain, 100.0 + 10 * index, 0.0).astype(np.float32)
        image[labels > 0] += 60 * (index + 1)
        # marker: patient's right-anterior corner of the brain, brightest voxels
        marker = brain & (world[0] > 14) & (world[1] > 20)
        image[marker] = 600.0
        images[name] = image
    return images, labels, affine


def make_toy_study() -> Study:
    images, labels, affine = toy_arrays()
    return Study("toy", Grid(TOY_SHAPE, affine), images, labels, LabelConvention.BRATS)


def write_toy_case(folder: Path) -> Path:
    """The toy study as a BraTS-named case folder of NIfTI files; returns the folder."""
    images, labels, affine = toy_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine), folder / f"toy_{name}.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "toy_seg.nii.gz")
    return folder


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch) -> Path:
    """Edit journals go to a temporary folder, never the user's own state folder."""
    folder = tmp_path / "state"
    monkeypatch.setenv("BRAINSEG_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def toy_study() -> Study:
    return make_toy_study()


@pytest.fixture
def toy_case(tmp_path: Path) -> Path:
    return write_toy_case(tmp_path / "toy")


@pytest.fixture
def settings(tmp_path: Path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


def rgb(image) -> np.ndarray:
    """A QImage (or QPixmap) as an (h, w, 3) uint8 array."""
    from PySide6.QtGui import QImage, QPixmap

    if isinstance(image, QPixmap):
        image = image.toImage()
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    return data.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def colour_mask(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    """Pixels close to a colour (an overlay blended at some opacity is not exactly it: compare hue)."""
    diff = np.abs(pixels.astype(int) - np.array(colour)).sum(axis=-1)
    return diff < tolerance


@pytest.fixture
def make_view_3d(qtbot, toy_study):
    """Build a shown View3D on the toy study (skips without OpenGL); returns (view, volume, state)."""

    def make(size: tuple[int, int] | None = (420, 420), *, exposed: bool = True):
        from brainseg_gui.app.display_volume import DisplayVolume
        from brainseg_gui.ui.view_3d import View3D, gl_problem
        from brainseg_gui.ui.viewer_state import ViewerState
        from brainseg_gui.ui.workers import JobRunner

        problem = gl_problem()
        if problem is not None:
            pytest.skip(f"no OpenGL for VTK here: {problem}")
        state = ViewerState()
        volume = DisplayVolume.from_study(toy_study)
        state.reset(volume.shape, volume.centre(), {}, "t1ce")
        view = View3D(state, JobRunner())
        qtbot.addWidget(view)
        if size is not None:
            view.resize(*size)
        view.show()
        if exposed:
            qtbot.waitExposed(view)
        return view, volume, state

    return make


def shown_window(qtbot, settings, monkeypatch, *, size: tuple[int, int] = (1400, 800), **kwargs):
    """A MainWindow built with `kwargs`, without the 3D view (it has its own tests), shown and exposed."""
    from brainseg_gui.ui.main_window import MainWindow

    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    window = MainWindow(settings=settings, **kwargs)
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    return window
