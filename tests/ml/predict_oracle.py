"""Test helpers for the predictor tests: a "blob" study, a fixed "oracle" network, a tiny config.

The blob study is an ellipsoidal brain with an off-centre tumour that is bright on FLAIR (the whole
tumour) and, in its core, on T1ce (enhancing). The oracle is a 1x1x1 convolution thresholding the
z-scored FLAIR (WT) and T1ce (TC, ET), so its masks overlap the blob's labels: a mirrored or shifted
paste-back shows up as a low Dice. Both are independent of the phantom's exact contrasts.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import nn

from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.study import SEQUENCES, Grid, Study
from brainseg_gui.ml.checkpoint import ModelCard
from brainseg_gui.ml.predictor import Predictor

TINY_CONFIG = {"widths": [4, 8], "convs_per_level": 1}


class Oracle(nn.Module):
    """WT: z-scored FLAIR > 1.5; TC and ET: z-scored T1ce > 1.5 (the blob's tumour contrasts)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(4, 3, 1)
        weight = torch.zeros(3, 4, 1, 1, 1)
        weight[0, 3] = weight[1, 1] = weight[2, 1] = 6.0
        self.conv.weight.data = weight
        self.conv.bias.data = torch.tensor([-6.0 * 1.5, -6.0 * 1.5, -6.0 * 1.5])
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.shapes.append(tuple(x.shape[2:]))
        return self.conv(x)


def oracle_predictor(**options: object) -> Predictor:
    card = ModelCard(architecture="generator3d", config=TINY_CONFIG, resolution_mm=2.0, version="oracle")
    return Predictor(Oracle(), card=card, device=torch.device("cpu"), **options)  # type: ignore[arg-type]


def blob_study(shape: tuple[int, int, int] = (48, 56, 40), spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
               *, seed: int = 0, case_id: str = "blob") -> Study:
    """A BraTS-like (LPS) study: ellipsoid brain, tumour off-centre (ED rim, ET core), labels 0/2/4."""
    rng = np.random.default_rng(seed)
    world = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"))
    extent = np.array([n * s for n, s in zip(shape, spacing)]).reshape(3, 1, 1, 1)
    brain = (((world - extent / 2) / (extent * 0.42)) ** 2).sum(axis=0) <= 1
    centre = (extent * np.array([0.62, 0.4, 0.55]).reshape(3, 1, 1, 1))
    distance = np.sqrt(((world - centre) ** 2).sum(axis=0))
    radius = 0.16 * float(extent.min())
    tumour = brain & (distance <= radius)
    core = brain & (distance <= 0.7 * radius)
    images = {}
    for name in SEQUENCES:
        image = np.where(brain, 100.0 + rng.normal(0, 3, shape), 0.0)
        if name == "flair":
            image[tumour] = 300.0
        if name == "t1ce":
            image[core] = 300.0
        images[name] = np.rint(image).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[tumour] = 2
    labels[core] = 4
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[1, 3] = (shape[1] - 1) * spacing[1]
    return Study(case_id=case_id, grid=Grid(shape, affine), images=images, labels=labels,
                 label_convention=LabelConvention.BRATS)


def write_case(folder: Path, study: Study) -> Path:
    """Write a study as a BraTS case folder `folder/<case_id>/<case_id>_{t1,...,seg}.nii.gz`."""
    case_dir = Path(folder) / study.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    arrays = {name: study.images[name].astype(np.int16) for name in study.images}
    if study.labels is not None:
        arrays["seg"] = study.labels
    for name, array in arrays.items():
        image = nib.Nifti1Image(array, study.grid.affine)
        image.set_qform(study.grid.affine, code=1)
        image.set_sform(study.grid.affine, code=1)
        nib.save(image, case_dir / f"{study.case_id}_{name}.nii.gz")
    return case_dir
