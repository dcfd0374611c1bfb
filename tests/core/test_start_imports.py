"""What starting BrainSeg imports: nibabel without pydicom (core/nib.py), pydicom still there later."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

PROBE = """
import sys
import brainseg_gui.core.study
assert "nibabel" in sys.modules, "nibabel not imported by core.study"
assert "pydicom" not in sys.modules and "requests" not in sys.modules, sorted(sys.modules)
import nibabel.nifti1
assert not nibabel.nifti1.have_dicom
import pydicom  # the DICOM code still gets the real one
assert pydicom.Dataset is not None
print("ok")
"""


def test_no_module_imports_nibabel_but_through_core_nib() -> None:
    """A `from nibabel...` or `import nibabel` elsewhere would import it with pydicom at start."""
    package = Path(__file__).resolve().parents[2] / "brainseg_gui"
    direct = re.compile(r"^\s*(import nibabel|from nibabel)", re.MULTILINE)
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.name != "nib.py" and direct.search(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_core_imports_nibabel_without_pydicom_and_pydicom_stays_importable() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_nifti_with_a_dicom_extension_still_reads(tmp_path: Path) -> None:
    """nibabel without pydicom keeps a DICOM extension (code 2) as raw bytes: the voxels are unchanged."""
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = nib.Nifti1Image(array, np.diag([1.5, 1.0, 2.0, 1.0]))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"))
    path = tmp_path / "with_dicom_extension.nii.gz"
    nib.save(image, path)
    reader = f"""
import sys, numpy as np
from pathlib import Path
from brainseg_gui.core.image_io import read_image
import nibabel.nifti1
assert not nibabel.nifti1.have_dicom
array, grid = read_image(Path({str(path)!r}))
assert np.array_equal(array, np.arange(120, dtype=np.int16).reshape(4, 5, 6)), array
assert np.allclose(grid.affine, np.diag([1.5, 1.0, 2.0, 1.0]))
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
