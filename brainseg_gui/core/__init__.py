"""Pure data layer: studies, labels, metrics, phantoms. Imports neither torch nor Qt."""

import sys


def _import_nibabel_without_pydicom() -> None:
    """Import nibabel before any core module does, with pydicom hidden from it for that moment.

    nibabel's NIfTI module imports pydicom (and with it requests and pydicom's pixel decoders) only to
    parse DICOM extensions stored inside NIfTI files, which BrainSeg never reads: 0.26 s of the
    viewer's 1.0 s of imports at start (python -X importtime). With `sys.modules["pydicom"] = None`
    nibabel finds no pydicom and keeps such extensions as raw bytes; the entry is removed at once, so
    the DICOM code imports the real pydicom when a DICOM study is opened.
    """
    if "nibabel" in sys.modules or "pydicom" in sys.modules:
        return
    sys.modules["pydicom"] = None  # type: ignore[assignment]  # `import pydicom` raises ImportError
    try:
        import nibabel  # noqa: F401
    finally:
        if "pydicom" in sys.modules and sys.modules["pydicom"] is None:
            del sys.modules["pydicom"]


_import_nibabel_without_pydicom()
