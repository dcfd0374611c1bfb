"""nibabel, imported without pydicom: every BrainSeg module reads nibabel through this one.

nibabel's NIfTI module imports pydicom (and with it requests and pydicom's pixel decoders) only to parse
DICOM extensions stored inside NIfTI files, which BrainSeg never reads: 0.26 s of the viewer's 1.0 s of
imports at start (python -X importtime). With `sys.modules["pydicom"] = None` for the moment nibabel is
imported, it finds no pydicom and keeps such extensions as raw bytes; the entry is removed at once, so
the DICOM code imports the real pydicom when a DICOM study is opened. A module that imported nibabel
earlier (a library, a test) leaves it as it is. `from nibabel...` imports elsewhere would bypass this,
so modules use `nib.<submodule>` (a test holds them to it).
"""

from __future__ import annotations

import sys


def _import_without_pydicom():  # -> the nibabel module
    hide = "nibabel" not in sys.modules and "pydicom" not in sys.modules
    if hide:
        sys.modules["pydicom"] = None  # type: ignore[assignment]  # `import pydicom` raises ImportError
    try:
        import nibabel
    finally:
        if hide and "pydicom" in sys.modules and sys.modules["pydicom"] is None:
            del sys.modules["pydicom"]
    return nibabel


nib = _import_without_pydicom()
