"""Deterministic synthetic BraTS-like cases: for tests, the built-in demo and CI's tiny training.

A phantom is a skull-stripped brain (zero background) with white and grey matter, cortical CSF, a
midline fissure, lateral ventricles and deep grey nuclei, plus a glioma: a necrotic core (NCR)
inside an enhancing rim (ET) inside peritumoral edema (ED), made irregular by smooth random
deformations. Each sequence gets the contrast of real MRI (T1: white matter bright, CSF dark;
T1ce: the rim enhances, the core stays dark; T2: CSF and edema bright; FLAIR: CSF dark, edema
bright), a smooth texture, white noise and a multiplicative bias field. Everything follows from the
seed and the shape. Phantoms are clearly marked as synthetic in their case id and warnings.

Array axes are (i, j, k) with a BraTS-like affine: i runs to the patient's left, j to posterior,
k to superior (nibabel axcodes L, P, S), as in the BraTS NIfTI files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.core.nib import nib
from brainseg_gui.core.study import SEQUENCES, Grid, Study

DEFAULT_SHAPE: tuple[int, int, int] = (120, 144, 112)
DEMO_SHAPE: tuple[int, int, int] = (160, 192, 144)
DEMO_SEED = 2021
DEMO_CASE_ID = "BrainSeg demo (synthetic phantom)"
PHANTOM_WARNING = "synthetic phantom, not a real patient"

#: File suffixes per naming scheme: BraTS 2017-2021 and BraTS 2023+ (see DESIGN.md, "Sequences").
NAMINGS: dict[str, dict[str, str]] = {
    "brats": {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"},
    "brats23": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"},
}
_NAMING_CONVENTION = {"brats": LabelConvention.BRATS, "brats23": LabelConvention.BRATS23}

#: Tissue order of the fraction maps, and mean intensity of each tissue per sequence (in the
#: range of BraTS scans: a few hundred to ~1500).
TISSUES = ("WM", "GM", "DGM", "CSF", "ED", "ET", "NCR")
INTENSITY: dict[str, tuple[float, ...]] = {
    #        WM    GM    DGM   CSF   ED    ET    NCR
    "t1":   (560, 400, 440, 150, 340, 430, 250),
    "t1ce": (580, 420, 450, 170, 360, 1250, 230),
    "t2":   (320, 520, 450, 1350, 900, 640, 1200),
    "flair": (380, 520, 460, 100, 1050, 760, 650),
}
#: The brain ellipsoid in normalised coordinates (-1..1 across the field of view), and how much
#: (fraction of its radius, at 2 sd) its outline wobbles.
BRAIN_CENTRE = (0.0, 0.02, -0.04)
BRAIN_SEMI_AXES = (0.86, 0.9, 0.84)
BRAIN_WOBBLE = 0.03
#: How much the tumour's lobulation changes its radius (fraction, at 2 sd).
LOBES = 0.15
#: Relative amplitude of the anatomical texture (shared by the sequences), standard deviation of
#: the additive white noise, strength of the multiplicative bias field (log scale, per axis).
TEXTURE = 0.035
NOISE_SD = 12.0
BIAS = 0.08


def make_phantom(
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    *,
    seed: int = 0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    case_id: str | None = None,
) -> Study:
    """A synthetic BraTS-like Study: four float32 sequences (integer-valued, 0 outside the brain,
    at least 1 inside) and BraTS labels (0/1/2/4).

    All three tissue classes are present from about 32 voxels a side; from about 48 they nest
    strictly (every face neighbour of NCR is NCR or ET, of the core NCR, ET or ED).

    The affine is diag(-1, -1, 1) * spacing with the BraTS origin (0, (nj - 1) * sj, 0), rounded to
    float32 so that NIfTI files hold it exactly.
    """
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    spacing = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    rng = np.random.default_rng(seed)
    fractions, labels, brain = _anatomy(shape, spacing, rng)

    # Tissue mixture -> mean intensity of each sequence, in one product over all voxels.
    means = np.array([INTENSITY[name] for name in SEQUENCES], dtype=np.float32)
    stack = (means @ fractions.reshape(len(TISSUES), -1)).reshape(len(SEQUENCES), *shape)
    del fractions
    stack *= 1 + np.float32(TEXTURE) * _smooth_field(shape, rng, nodes=20)
    images: dict[str, np.ndarray] = {}
    for channel, name in enumerate(SEQUENCES):
        image = stack[channel]
        image *= _bias_field(shape, rng)
        noise = rng.random(shape, dtype=np.float32)  # uniform, cheaper than normal; sd NOISE_SD:
        noise -= np.float32(0.5)
        noise *= np.float32(NOISE_SD * np.sqrt(12.0))
        image += noise
        np.rint(image, out=image)
        np.clip(image, 1, 32767, out=image)
        image *= brain
        images[name] = image

    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[1, 3] = (shape[1] - 1) * spacing[1]
    affine = affine.astype(np.float32).astype(np.float64)
    return Study(
        case_id=case_id if case_id is not None else f"demo-phantom-seed{seed}",
        grid=Grid(shape, affine),
        images=images,
        labels=labels,
        label_convention=LabelConvention.BRATS,
        warnings=(PHANTOM_WARNING,),
    )


def demo_study() -> Study:
    """The built-in demo: a BraTS-sized phantom (160x192x144 at 1 mm) with a fixed seed."""
    return make_phantom(DEMO_SHAPE, seed=DEMO_SEED, case_id=DEMO_CASE_ID)


def write_phantom_case(
    folder: Path,
    *,
    seed: int = 0,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    naming: str = "brats",
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    case_id: str | None = None,
) -> Path:
    """Write a phantom as a BraTS case folder `folder/<case_id>/` and return that folder.

    naming="brats": `<id>_t1.nii.gz`, `_t1ce`, `_t2`, `_flair`, `_seg` with labels 1/2/4;
    naming="brats23": `<id>-t1n.nii.gz`, `-t1c`, `-t2w`, `-t2f`, `-seg` with labels 1/2/3.
    Images are int16 and the seg uint8, as BraTS ships them; each file is written atomically.
    """
    if naming not in NAMINGS:
        raise ValueError(f"unknown naming {naming!r}; known: {', '.join(NAMINGS)}")
    study = make_phantom(shape, seed=seed, spacing=spacing, case_id=case_id)
    suffixes = NAMINGS[naming]
    case_dir = Path(folder) / study.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    for name in SEQUENCES:
        data = study.images[name].astype(np.int16)
        _save_nifti(data, study.grid.affine, case_dir / f"{study.case_id}{suffixes[name]}.nii.gz")
    assert study.labels is not None  # make_phantom always labels
    labels = convert(study.labels, LabelConvention.BRATS, _NAMING_CONVENTION[naming])
    _save_nifti(labels, study.grid.affine, case_dir / f"{study.case_id}{suffixes['seg']}.nii.gz")
    return case_dir


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    write_atomic(path, lambda temporary: nib.save(image, temporary))


# ---------------------------------------------------------------- anatomy


def _anatomy(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue fractions (len(TISSUES), *shape) float32 summing to 1, BraTS labels (uint8), brain mask."""
    # Normalised coordinates: -1..1 across the field of view along each axis (L, P, S).
    u = [np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32) for n in shape]
    ux, uy, uz = u[0][:, None, None], u[1][None, :, None], u[2][None, None, :]
    voxel = 2.0 / float(np.mean(shape))  # one voxel in normalised units, for partial-volume ramps

    def ellipsoid_radius(centre: tuple[float, float, float], semi: tuple[float, float, float]) -> np.ndarray:
        return np.sqrt(((ux - centre[0]) / semi[0]) ** 2 + ((uy - centre[1]) / semi[1]) ** 2
                       + ((uz - centre[2]) / semi[2]) ** 2)

    # The brain: a slightly irregular ellipsoid; zero outside (skull-stripped, as BraTS).
    radius = ellipsoid_radius(BRAIN_CENTRE, BRAIN_SEMI_AXES)
    radius *= 1 + np.float32(BRAIN_WOBBLE) * np.clip(_smooth_field(shape, rng, nodes=5), -2, 2)
    brain = radius < 1.0
    # Cortex: a folded radius puts a grey ribbon under a CSF layer, with gyri where the fold dips
    # and CSF-filled sulci where it rises.
    folded = radius + np.float32(0.09) * _smooth_field(shape, rng, nodes=40)
    grey = _ramp(folded, 0.88, voxel)
    csf = _ramp(folded, 0.96, voxel)
    fissure = (np.abs(ux) < 1.2 * voxel) & (radius > 0.45) & (uz > -0.3)
    csf[fissure] = 1.0
    deep_grey = np.zeros(shape, np.float32)
    width = 1.5 * voxel / 0.08  # about a voxel and a half, in units of these small radii
    for side in (-1.0, 1.0):
        _paint_blob(csf, u, (side * 0.1, -0.02, 0.1), (0.07, 0.32, 0.11), width)  # lateral ventricle
        _paint_blob(deep_grey, u, (side * 0.22, 0.05, -0.05), (0.1, 0.16, 0.1), width)  # thalamus etc.

    fractions = np.empty((len(TISSUES), *shape), np.float32)
    wm, gm, dgm, cerebrospinal, ed, et, ncr = fractions
    labels = _tumour(shape, spacing, rng, (ux, uy, uz), voxel, brain, grey, (ed, et, ncr))
    # Layers from the bottom up, each taking its share of what lies below: WM, cortex and deep
    # grey matter, CSF, tumour. ed + et + ncr is the tumour's whole share.
    healthy = 1 - (ed + et + ncr)
    np.multiply(csf, healthy, out=cerebrospinal)
    healthy -= cerebrospinal  # now the share of brain tissue
    np.multiply(grey, healthy, out=gm)
    healthy -= gm
    np.multiply(deep_grey, healthy, out=dgm)
    np.subtract(healthy, dgm, out=wm)
    return fractions, labels, brain


def _tumour(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    voxel: float,
    brain: np.ndarray,
    grey: np.ndarray,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """An irregular glioma: writes the ED, ET, NCR fractions into `out`, returns BraTS labels.

    One lobulated radial distance orders the layers, so they nest by construction: NCR below a
    wavy edge around 0.66, ET up to 1, ED up to a wavy edge of at least 1.2 (kept out of the cortex
    beyond 1.25, as edema spreads along white matter).
    """
    # Isotropic-in-mm coordinates: normalised units scaled by each axis' share of the mean extent.
    extent = np.array([n * s for n, s in zip(shape, spacing)], dtype=np.float64)
    scale = extent / extent.mean()
    coarsest_voxel = 2 * max(spacing) / extent.mean()  # in those isotropic units
    # Radius of the tumour core (NCR + ET) before lobulation: about a fifth of the field of view,
    # never under 9 of the coarsest voxels so that each layer stays over a voxel thick.
    core = max(rng.uniform(0.18, 0.24), 9 * coarsest_voxel)
    side = rng.choice([-1.0, 1.0])
    centre = np.array([side * rng.uniform(0.22, 0.35), rng.uniform(-0.3, 0.25), rng.uniform(-0.05, 0.25)])
    # Keep the core two voxels inside the smallest brain the wobble allows: its farthest point
    # is core / (1 - 2 LOBES) away; move the centre towards the brain's if it would stick out.
    semi = np.array(BRAIN_SEMI_AXES)
    offset = (centre - BRAIN_CENTRE) / semi
    margin = 2 * max(2 / (n * a) for n, a in zip(shape, semi))
    room = 1 / (1 + 2 * BRAIN_WOBBLE) - margin - core / (1 - 2 * LOBES) * float(np.max(1 / (scale * semi)))
    if np.linalg.norm(offset) > max(room, 0.0):
        centre = BRAIN_CENTRE + offset * semi * max(room, 0.0) / np.linalg.norm(offset)
    distance = np.sqrt(sum(((c - np.float32(c0)) * np.float32(s)) ** 2 for c, c0, s in zip(coords, centre, scale)))
    lobes = 1 + np.float32(LOBES) * np.clip(_smooth_field(shape, rng, nodes=16), -2, 2)
    distance *= lobes / np.float32(core)
    necrosis_edge = 0.66 + 0.06 * np.clip(_smooth_field(shape, rng, nodes=24), -2, 2)
    edema_edge = rng.uniform(1.35, 1.7) + 0.3 * np.clip(_smooth_field(shape, rng, nodes=10), -2, 2)
    np.maximum(edema_edge, 1.2, out=edema_edge)
    in_cortex = grey > 0.5
    edema_edge[in_cortex] = np.minimum(edema_edge[in_cortex], 1.25)

    labels = np.zeros(shape, np.uint8)
    labels[(distance < edema_edge) & brain] = 2
    labels[(distance < 1.0) & brain] = 4
    labels[(distance < necrosis_edge) & brain] = 1

    width = voxel / core
    ed, et, ncr = out
    np.copyto(ncr, _ramp(-distance, -necrosis_edge, width))
    np.copyto(et, _ramp(-distance, -1.0, width))  # the whole core for now
    np.copyto(ed, _ramp(-distance, -edema_edge, 2 * width))  # the whole tumour for now
    ed -= et
    et -= ncr
    return labels


def _paint_blob(
    target: np.ndarray,
    coords: list[np.ndarray],
    centre: tuple[float, float, float],
    semi: tuple[float, float, float],
    width: float,
) -> None:
    """Raise `target` to a soft ellipsoid's membership, computed only in its bounding box."""
    box = []
    for u, c, a in zip(coords, centre, semi):
        inside = np.flatnonzero(np.abs(u - c) <= a * (1 + width))
        if inside.size == 0:
            return
        box.append(slice(int(inside[0]), int(inside[-1]) + 1))
    ux, uy, uz = (((u[b] - c) / a) ** 2 for u, b, c, a in zip(coords, box, centre, semi))
    radius = np.sqrt(ux[:, None, None] + uy[None, :, None] + uz[None, None, :])
    region = target[tuple(box)]
    np.maximum(region, _ramp(-radius, -1.0, width), out=region)


def _ramp(value: np.ndarray, edge: float | np.ndarray, width: float) -> np.ndarray:
    """Partial-volume membership of `value > edge`: 0 below, 1 above, linear over `width`."""
    out = np.subtract(value, edge, dtype=np.float32)
    out *= np.float32(1.0 / width)
    out += np.float32(0.5)
    return np.clip(out, 0, 1, out=out)


def _bias_field(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative bias around 1: a product of smooth 1-D profiles (cheap, broadcast)."""
    factors = []
    for axis, n in enumerate(shape):
        profile = np.exp(np.float32(BIAS) * _smooth_profile(n, rng, nodes=3))
        factors.append(profile.reshape([n if a == axis else 1 for a in range(3)]))
    return factors[0] * factors[1] * factors[2]


def _smooth_profile(n: int, rng: np.random.Generator, nodes: int) -> np.ndarray:
    return _basis(n, nodes) @ rng.standard_normal(nodes).astype(np.float32)


def _basis(n: int, nodes: int) -> np.ndarray:
    """(n, nodes) Gaussian bumps on a lattice a little wider than -1..1, rows of unit norm (so a
    sum with standard normal weights has unit variance at every point)."""
    x = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    centres = np.linspace(-1.2, 1.2, nodes)
    step = centres[1] - centres[0]
    basis = np.exp(-0.5 * ((x[:, None] - centres[None, :]) / step) ** 2)
    basis /= np.sqrt((basis**2).sum(axis=1, keepdims=True))
    return basis.astype(np.float32)


def _smooth_field(shape: tuple[int, int, int], rng: np.random.Generator, nodes: int) -> np.ndarray:
    """Smooth random field of unit variance: Gaussian bumps on a `nodes`^3 lattice with standard
    normal weights, summed separably (the last product is one matrix multiplication)."""
    weights = rng.standard_normal((nodes, nodes, nodes)).astype(np.float32)
    b0, b1, b2 = (_basis(n, nodes) for n in shape)
    field = (weights.reshape(-1, nodes) @ b2.T).reshape(nodes, nodes, shape[2])  # (a, b, k)
    field = field.transpose(1, 0, 2).reshape(nodes, -1)  # (b, a * k)
    field = (b1 @ field).reshape(shape[1], nodes, shape[2]).transpose(1, 0, 2)  # (a, j, k)
    return (b0 @ field.reshape(nodes, -1)).reshape(shape)
