"""BrainSeg: brain-tumour MRI segmentation with an adversarially trained network.

Research software, not a diagnostic device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__version__ = "0.1.0"

RESEARCH_USE_NOTE = (
    "BrainSeg is research software. It is not a medical device and must not be used for diagnosis."
)


def resources_dir() -> Path:
    """The folder of icons and the style sheet: the installed package `brainseg_gui.resources`, else
    the `resources/` folder beside the package (a source checkout or the PyInstaller bundle)."""
    from importlib import resources
    from pathlib import Path

    try:
        return Path(str(resources.files("brainseg_gui.resources")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "resources"
