"""Rigid co-registration of one MRI sequence to another (SimpleITK, Mattes mutual information).

Sequences of one session differ by head motion between acquisitions and by their grids (slice
thickness, orientation, field of view). Mutual information compares T1/T2/FLAIR intensities that
do not match one to one; the multi-resolution pyramid (shrink factors 4, 2, 1) finds the coarse
alignment first and is robust to thick slices.

Transforms are kept as 4x4 matrices in RAS world millimetres that map a point of the FIXED
(reference) world to the same anatomy in the MOVING sequence's world: `prepared = moving(T @ x)`.
SimpleITK works in LPS; no LPS matrix leaves this module: the transform is read back through
voxel indices (SimpleITK's index (x, y, z) is our (i, j, k), see `image_io.to_sitk`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.image_io import to_sitk
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.study import Grid

if TYPE_CHECKING:
    import SimpleITK as sitk

log = logging.getLogger(__name__)


class RegistrationError(BrainSegError):
    """Registration did not converge to a plausible alignment."""


@dataclass(frozen=True)
class RegistrationSettings:
    """How hard registration works; the defaults align a head in a few seconds on two cores."""

    #: Images finer than this (mm) are first averaged in bins of whole voxels (BinShrink): the
    #: pyramid then starts from ~2 mm voxels, which keeps a registration to seconds.
    working_mm: float = 2.0
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    #: Fraction of voxels sampled at each level (random, seeded): coarse levels have few voxels.
    sampling_percentages: tuple[float, ...] = (0.25, 0.06, 0.015)
    histogram_bins: int = 32
    learning_rate: float = 1.0
    min_step: float = 0.001
    iterations: int = 200
    seed: int = 20240
    #: A motion larger than this (degrees, mm) between two sequences of one session is a failure.
    max_rotation_deg: float = 30.0
    max_translation_mm: float = 60.0

    def as_dict(self) -> dict[str, Any]:
        return {"metric": "Mattes mutual information", "histogram_bins": self.histogram_bins,
                "sampling": "random", "sampling_percentages": list(self.sampling_percentages),
                "shrink_factors": list(self.shrink_factors),
                "smoothing_sigmas_mm": list(self.smoothing_sigmas_mm),
                "optimizer": "regular step gradient descent", "learning_rate": self.learning_rate,
                "min_step": self.min_step, "iterations": self.iterations, "seed": self.seed,
                "transform": "Euler3D (rigid)"}


@dataclass(frozen=True)
class RigidTransform:
    """A rigid map of RAS world mm: reference (fixed) world -> a sequence's (moving) world.

    `centre_mm` is the rotation centre (RAS); `angles_deg` rotate about R, A, S (applied x then
    y then z: R = Rz @ Ry @ Rx); `translation_mm` moves the centre. `matrix` is the whole 4x4.
    """

    matrix: np.ndarray
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    metric: float | None = None
    initialisation: str = "identity"
    seconds: float = 0.0

    @property
    def angles_deg(self) -> tuple[float, float, float]:
        return rotation_angles(self.matrix[:3, :3])

    @property
    def translation_mm(self) -> tuple[float, float, float]:
        centre = np.array(self.centre_mm)
        moved = self.matrix[:3, :3] @ centre + self.matrix[:3, 3]
        return tuple(float(v) for v in moved - centre)  # type: ignore[return-value]

    @property
    def rotation_deg(self) -> float:
        """The whole rotation as one angle (axis-angle), in degrees."""
        return rotation_angle(self.matrix[:3, :3])

    def as_dict(self) -> dict[str, Any]:
        return {"matrix": [[float(v) for v in row] for row in self.matrix],
                "centre_mm": list(self.centre_mm), "rotation_deg": list(self.angles_deg),
                "rotation_total_deg": self.rotation_deg, "translation_mm": list(self.translation_mm),
                "metric": self.metric, "initialisation": self.initialisation, "seconds": self.seconds}


IDENTITY = RigidTransform(np.eye(4))


def rigid_matrix(angles_deg: tuple[float, float, float] | np.ndarray,
                 translation_mm: tuple[float, float, float] | np.ndarray,
                 centre_mm: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 RAS matrix: rotate by `angles_deg` (about R, then A, then S) around `centre_mm`, then shift."""
    ax, ay, az = np.radians(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    centre = np.asarray(centre_mm, dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre + np.asarray(translation_mm, dtype=np.float64) - rotation @ centre
    return matrix


def rotation_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """Angles (degrees) about R, A, S with rotation = Rz @ Ry @ Rx (inverse of `rigid_matrix`)."""
    ay = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    ax = np.arctan2(rotation[2, 1], rotation[2, 2])
    az = np.arctan2(rotation[1, 0], rotation[0, 0])
    return tuple(float(np.degrees(a)) for a in (ax, ay, az))  # type: ignore[return-value]


def rotation_angle(rotation: np.ndarray) -> float:
    """The angle (degrees) of a 3x3 rotation about its axis."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))


def mean_displacement_mm(a: np.ndarray, b: np.ndarray, points_mm: np.ndarray) -> float:
    """Mean distance (mm) between where two 4x4 maps send the (n, 3) points: how far apart they are."""
    points = np.c_[points_mm, np.ones(len(points_mm))]
    return float(np.linalg.norm((points @ (a - b).T)[:, :3], axis=1).mean())


def register_rigid(
    fixed: np.ndarray,
    fixed_grid: Grid,
    moving: np.ndarray,
    moving_grid: Grid,
    *,
    settings: RegistrationSettings | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> RigidTransform:
    """The rigid transform (fixed world -> moving world, RAS) that best aligns `moving` to `fixed`.

    Arrays are (i, j, k) on their grids. Starts from the better (by the metric) of two guesses:
    the identity (sequences of one session share the scanner's frame) and the alignment of the
    volumes' centres (SimpleITK's CenteredTransformInitializer, GEOMETRY). Raises
    RegistrationError when the result is an implausibly large motion; Cancelled if cancelled.
    """
    import SimpleITK as sitk

    settings = settings or RegistrationSettings()
    start = time.perf_counter()
    fixed_image = sitk.Cast(to_sitk(fixed, fixed_grid), sitk.sitkFloat32)
    moving_image = sitk.Cast(to_sitk(moving, moving_grid), sitk.sitkFloat32)
    fixed_work = _working(fixed_image, settings.working_mm)
    moving_work = _working(moving_image, settings.working_mm)
    schedule = _schedule(settings, fixed_work)
    method = _method(settings, schedule)
    initial, how = _initial_transform(method, fixed_work, moving_work)
    method.SetInitialTransform(initial, inPlace=False)
    levels = len(schedule)

    def on_iteration() -> None:
        if cancel is not None and cancel.cancelled:
            method.StopRegistration()
            return
        level = method.GetCurrentLevel()
        iteration = method.GetOptimizerIteration()
        progress((level + min(iteration / settings.iterations, 1.0)) / levels,
                 f"registering: level {level + 1} of {levels}, iteration {iteration}")

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        final = method.Execute(fixed_work, moving_work)
    except RuntimeError as exc:
        raise RegistrationError(f"registration failed: {str(exc).splitlines()[-1]}") from exc
    if cancel is not None:
        cancel.raise_if_cancelled()
    metric = float(method.GetMetricValue())
    kept, identity_metric = _better_than_identity(settings, fixed_work, moving_work, final)
    if not kept:  # e.g. sequences already aligned: registering them again only adds noise
        final, how, metric = sitk.Euler3DTransform(), "identity (registration did not improve on it)", identity_metric
    matrix = _ras_matrix(final, fixed_image, moving_image, fixed_grid, moving_grid)
    centre = _centre_mm(fixed_grid)
    result = RigidTransform(matrix, centre, metric, how, time.perf_counter() - start)
    log.info("registered (%s start): rotation %.2f deg, translation %s mm, metric %.4f, %.1f s, %s",
             how, result.rotation_deg, np.round(result.translation_mm, 2), metric, result.seconds,
             method.GetOptimizerStopConditionDescription())
    if result.rotation_deg > settings.max_rotation_deg or \
            np.linalg.norm(result.translation_mm) > settings.max_translation_mm:
        raise RegistrationError(
            f"registration found an implausible motion (rotation {result.rotation_deg:.1f} degrees, "
            f"translation {np.linalg.norm(result.translation_mm):.1f} mm; at most "
            f"{settings.max_rotation_deg:g} degrees and {settings.max_translation_mm:g} mm expected "
            "between sequences of one session): check that the sequences show the same head")
    progress(1.0, "registered")
    return result


#: Pyramid levels whose image would be smaller than this (voxels along an axis) are skipped, and
#: each level samples at least MIN_SAMPLES voxels: tiny images otherwise register to noise.
MIN_LEVEL_VOXELS, MIN_SAMPLES = 12, 8000


def _schedule(settings: RegistrationSettings, fixed: sitk.Image) -> list[tuple[int, float, float]]:
    """(shrink factor, smoothing sigma mm, sampling fraction) of each level this image can take."""
    size = np.array(fixed.GetSize(), dtype=np.float64)
    levels = [(shrink, sigma, percentage) for shrink, sigma, percentage in
              zip(settings.shrink_factors, settings.smoothing_sigmas_mm, settings.sampling_percentages, strict=True)
              if shrink == 1 or size.min() / shrink >= MIN_LEVEL_VOXELS]
    return [(shrink, sigma, min(1.0, max(percentage, MIN_SAMPLES / float(np.prod(size / shrink)))))
            for shrink, sigma, percentage in levels]


def _better_than_identity(settings: RegistrationSettings, fixed: sitk.Image, moving: sitk.Image,
                          found: sitk.Transform) -> tuple[bool, float]:
    """Whether `found` beats the identity on the full working images (same samples for both)."""
    import SimpleITK as sitk

    evaluator = sitk.ImageRegistrationMethod()
    evaluator.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    evaluator.SetMetricSamplingStrategy(evaluator.REGULAR)
    voxels = float(np.prod(fixed.GetSize()))
    evaluator.SetMetricSamplingPercentage(min(1.0, max(0.05, 4 * MIN_SAMPLES / voxels)), settings.seed)
    evaluator.SetInterpolator(sitk.sitkLinear)
    scores = []
    for transform in (sitk.Euler3DTransform(), found):
        evaluator.SetInitialTransform(transform, inPlace=False)
        try:
            scores.append(float(evaluator.MetricEvaluate(fixed, moving)))
        except RuntimeError:
            scores.append(np.inf)
    return scores[1] < scores[0], scores[0]


def _method(settings: RegistrationSettings, schedule: list[tuple[int, float, float]]) -> sitk.ImageRegistrationMethod:
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel([level[2] for level in schedule], settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate, minStep=settings.min_step,
        numberOfIterations=settings.iterations, relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([level[0] for level in schedule])
    method.SetSmoothingSigmasPerLevel([level[1] for level in schedule])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _working(image: sitk.Image, working_mm: float) -> sitk.Image:
    """`image` averaged in bins of whole voxels so that no axis is finer than ~working_mm."""
    import SimpleITK as sitk

    factors = [max(1, round(working_mm / spacing)) for spacing in image.GetSpacing()]
    return image if factors == [1, 1, 1] else sitk.BinShrink(image, factors)


def _initial_transform(method: sitk.ImageRegistrationMethod, fixed: sitk.Image,
                       moving: sitk.Image) -> tuple[sitk.Transform, str]:
    """Identity or centres aligned (GEOMETRY), whichever the metric prefers (lower is better)."""
    import SimpleITK as sitk

    geometry = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.GEOMETRY)
    identity = sitk.Euler3DTransform(geometry)
    identity.SetTranslation((0.0, 0.0, 0.0))  # keeps the centre of rotation at the fixed centre
    scores = {}
    for name, transform in (("identity", identity), ("centres aligned", geometry)):
        method.SetInitialTransform(transform, inPlace=False)
        try:
            scores[name] = method.MetricEvaluate(fixed, moving)
        except RuntimeError:  # e.g. too few samples overlap
            scores[name] = np.inf
    best = min(scores, key=lambda name: scores[name])
    return (identity if best == "identity" else geometry), best


def _ras_matrix(transform: sitk.Transform, fixed: sitk.Image, moving: sitk.Image,
                fixed_grid: Grid, moving_grid: Grid) -> np.ndarray:
    """The RAS 4x4 of a SimpleITK transform, read through voxel indices (no LPS step here)."""
    corners = [(0.0, 0.0, 0.0), (100.0, 0.0, 0.0), (0.0, 100.0, 0.0), (0.0, 0.0, 100.0)]
    source = np.array([list(c) + [1.0] for c in corners])
    mapped = []
    for corner in corners:
        point = transform.TransformPoint(fixed.TransformContinuousIndexToPhysicalPoint(corner))
        mapped.append(list(moving.TransformPhysicalPointToContinuousIndex(point)) + [1.0])
    voxel_to_voxel = np.linalg.solve(source, np.array(mapped)).T  # fixed index -> moving index
    matrix = moving_grid.affine @ voxel_to_voxel @ np.linalg.inv(fixed_grid.affine)
    matrix[3] = (0.0, 0.0, 0.0, 1.0)
    return matrix


def _centre_mm(grid: Grid) -> tuple[float, float, float]:
    centre = grid.affine @ np.r_[(np.array(grid.shape) - 1) / 2.0, 1.0]
    return tuple(float(v) for v in centre[:3])  # type: ignore[return-value]
