"""Time `prepare_study` on this CPU (target: under 60 s a study) and how well it recovers the truth.

Run: python bench/prepare.py [path to ../shared/data] [--quick]
Studies: a full-size synthetic raw case built from BraTS2021_00003 (4 sequences, three moved by known
rigid motions, FLAIR on 5 mm slices, T2 in RAS order, synthetic scalp, Rician background; 240 x 240 x 155),
then the real SAG-anon DICOM head (prepared as a T1) and the pyradiomics brain1 NRRD (6.5 mm slices).
Reference measured in the same run: one plain SimpleITK linear resample of the 240 x 240 x 155 T1 through
a rotation (what a 'resample' costs here), so the ratio is comparable across machines and loads.
--quick: the synthetic case only.
--segment: also the end-to-end figure on a case the shipped model did not train on (BraTS2021_00019):
raw version prepared, segmented, labels mapped back onto the original 5 mm FLAIR grid, Dice against the
truth on that grid; beside it, the Dice of segmenting the BraTS-ready original directly.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "core"))

from raw_builders import dice, make_raw_case, unpack_dicom

from brainseg_gui.core.image_io import read_image, to_sitk
from brainseg_gui.core.prepare import prepare_study
from brainseg_gui.core.registration import mean_displacement_mm, rotation_angle

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
DATA = Path(ARGS[0]) if ARGS else REPO.parent / "shared" / "data"
QUICK = "--quick" in sys.argv
SEGMENT = "--segment" in sys.argv
HELD_OUT = "BraTS2021_00019"  # a validation case of the shipped model (model/card.json)


def reference_seconds(path: Path) -> float:
    """Best of 3: one SimpleITK linear resample of the volume through a 10-degree rotation."""
    import SimpleITK as sitk

    array, grid = read_image(path)
    image = sitk.Cast(to_sitk(array, grid), sitk.sitkFloat32)
    rotation = sitk.Euler3DTransform()
    rotation.SetCenter(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    rotation.SetRotation(np.radians(10.0), 0.0, 0.0)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        sitk.Resample(image, image, rotation, sitk.sitkLinear, 0.0)
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, seconds: float, record: dict, reference: float) -> None:
    steps = ", ".join(f"{k} {v:.1f}" for k, v in record["timings_s"].items() if k != "total")
    print(f"{name}: prepared in {seconds:.1f} s ({seconds / reference:.0f}x the reference resample; "
          f"target < 60 s): {steps}")
    brain = record["brain_extraction"]
    print(f"  brain {brain['volume_ml']:.0f} mL from {brain['sequence']}; grid "
          f"{'x'.join(map(str, record['prepared_grid']['shape']))} at {record['resolution_mm']:g} mm "
          f"{record['orientation']}")
    for warning in record["warnings"]:
        print(f"  warning: {warning}")


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the warnings are printed with each study below
    print(f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        raw = make_raw_case(DATA / "brats2021" / "BraTS2021_00003", work / "raw", crop_margin_mm=None)
        reference = reference_seconds(raw.files["t1"])
        print(f"reference: SimpleITK linear resample of the 240x240x155 T1: {reference:.3f} s")
        start = time.perf_counter()
        prepared = prepare_study(work / "raw", work / "prepared", keep_images=True)
        seconds = time.perf_counter() - start
        record = dict(prepared.record.data)
        report("synthetic raw BraTS2021_00003 (4 sequences)", seconds, record, reference)
        voxels = np.argwhere(raw.brain)[::100]
        points = (raw.reference_grid.affine @ np.c_[voxels, np.ones(len(voxels))].T).T[:, :3]
        for name, truth in raw.motions.items():
            found = prepared.record.sequences[name].matrix
            print(f"  {name:<6} error vs the known motion: rotation {rotation_angle(found[:3, :3] @ truth[:3, :3].T):.2f}"
                  f" deg, mean displacement over the brain {mean_displacement_mm(found, truth, points):.2f} mm "
                  f"(motion {rotation_angle(truth[:3, :3]):.1f} deg)")
        assert prepared.brain is not None and prepared.grid.same_as(raw.reference_grid)
        print(f"  brain extraction Dice vs the known brain: {dice(prepared.brain, raw.brain):.4f}")
        if SEGMENT:
            segment_end_to_end(work)
        if QUICK:
            return
        series = unpack_dicom(DATA, work)
        start = time.perf_counter()
        dicom = prepare_study(None, work / "dicom_out", files={"t1": series}, case_id="SAG-anon")
        report("real DICOM SAG-anon (T1, 256x256x192, oblique)", time.perf_counter() - start,
               dict(dicom.record.data), reference)
        start = time.perf_counter()
        nrrd = prepare_study(DATA / "nrrd" / "brain1_image.nrrd", work / "nrrd_out")
        report("real NRRD brain1 (256x256x25, 6.5 mm slices)", time.perf_counter() - start,
               dict(nrrd.record.data), reference)


def segment_end_to_end(work: Path) -> None:
    """Prepared + segmented + mapped back vs the truth, and the BraTS-ready original segmented directly."""
    from brainseg_gui.core.io import load_study
    from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
    from brainseg_gui.core.prepared_space import map_to_original
    from brainseg_gui.ml.predictor import Predictor

    predictor = Predictor.from_model_dir(None, device="cpu")
    case_dir = DATA / "brats2021" / HELD_OUT
    raw = make_raw_case(case_dir, work / "raw_held_out")
    start = time.perf_counter()
    prepared = prepare_study(work / "raw_held_out", work / "prepared_held_out")
    prepare_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prediction = predictor(load_study(prepared.out_dir))
    labels, _ = map_to_original(prediction.labels(LabelConvention.BRATS), prepared.record, "flair")
    segment_seconds = time.perf_counter() - start
    truth = to_regions(raw.labels_on("flair"), LabelConvention.BRATS)
    mapped = to_regions(labels, LabelConvention.BRATS)
    scores = ", ".join(f"{r} {dice(mapped[i], truth[i]):.3f}" for i, r in enumerate(REGIONS))
    print(f"{HELD_OUT} raw (held out): prepare {prepare_seconds:.1f} s, segment + map back {segment_seconds:.1f} s; "
          f"Dice on the original 5 mm FLAIR grid: {scores}")
    direct = predictor(load_study(case_dir, label_convention="brats"))
    study = load_study(case_dir, label_convention="brats")
    assert study.labels is not None
    reference = to_regions(study.labels, LabelConvention.BRATS)
    ready = to_regions(direct.labels(LabelConvention.BRATS), LabelConvention.BRATS)
    scores = ", ".join(f"{r} {dice(ready[i], reference[i]):.3f}" for i, r in enumerate(REGIONS))
    print(f"{HELD_OUT} BraTS-ready original segmented directly: Dice {scores}")


if __name__ == "__main__":
    main()
