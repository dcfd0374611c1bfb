"""Run `brainseg` on bad inputs of every kind the trust issue names; print time, memory and outcome.

Run: python bench/bad_inputs.py [SCRATCH_DIR]   (default: a fresh temporary folder, removed after)

Each command runs in its own process, as a user meets it. For each the script prints the exit
status, wall seconds, peak memory (the child's own maximum resident set, from wait4) and whether it
kept the promises: exit 2 with one `brainseg: error:` line and no traceback, under 10 s and 2 GB,
and nothing in the protected folder changed. The reference is `brainseg info` on a good phantom
case, timed in the same run: each figure is also printed as a ratio to it (the machine is shared).
The tests check each kind's message and file effects; this script checks the bounds, which tests
may not time. Exit status 1 when any command broke a promise.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg_gui.core.phantom import write_phantom_case

WALL_LIMIT_S = 10.0
MEMORY_LIMIT_MB = 2048


@dataclass
class Outcome:
    name: str
    status: int
    wall_s: float
    peak_mb: float
    last_line: str
    problems: list[str]


def _snapshot(folder: Path | None) -> dict[str, str]:
    if folder is None:
        return {}
    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "other"
            for p in sorted(folder.rglob("*"))}


def _brainseg(args: list[str], env: dict[str, str], scratch: Path) -> tuple[int, float, float, str]:
    """Exit status, wall seconds, peak resident MB and stderr of one `brainseg` process."""
    err_path = scratch / ".stderr"
    with open(err_path, "wb") as err, open(os.devnull, "rb") as nothing:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "brainseg_gui", *args], stdin=nothing,
                                 stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            _, raw_status, usage = os.wait4(child.pid, 0)
        except KeyboardInterrupt:
            child.kill()
            raise
        child.returncode = os.waitstatus_to_exitcode(raw_status)  # already reaped by wait4
        wall = time.perf_counter() - started
    return child.returncode, wall, usage.ru_maxrss / 1024, err_path.read_text(errors="replace")


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def _header_only(path: Path, shape: tuple[int, ...], gz: bool = False) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    raw = bytes(header.binaryblock) + b"\0" * 104
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def build(root: Path) -> tuple[list[tuple[str, list[str], int, Path | None]], Path]:
    """The bad inputs under `root`: (name, brainseg arguments, expected status, folder to protect)."""
    case = write_phantom_case(root / "cases", shape=(48, 56, 40), case_id="P1")
    other = write_phantom_case(root / "cases", shape=(48, 56, 40), case_id="P2")
    bad = root / "in"
    bad.mkdir()
    (root / "secret.raw").write_bytes(np.zeros(512, np.int16).tobytes())
    nrrd = "NRRD0004\ntype: short\ndimension: 3\nsizes: 8 8 8\nencoding: raw\nendian: little\ndata file: {}\n\n"
    (bad / "out.nhdr").write_text(nrrd.format("../secret.raw"))
    (bad / "abs.nhdr").write_text(nrrd.format("/etc/hostname"))
    (bad / "out.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementType = MET_SHORT\n"
                                 "ElementDataFile = ../secret.raw\n")
    (bad / "out.hdr").write_bytes(b"\0" * 348)
    os.symlink(case / "P1_flair.nii.gz", bad / "link.nii.gz")
    os.symlink("/dev/zero", bad / "zero.nii")
    _header_only(bad / "huge.nii", (4000, 4000, 4000))
    _header_only(bad / "huge.nii.gz", (4000, 4000, 4000), gz=True)
    (bad / "huge.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 5000 5000 5000\n"
                                    b"encoding: raw\nendian: little\n\n" + b"\0" * 100)
    (bad / "huge.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 5000 5000 5000\n"
                                   b"ElementType = MET_FLOAT\nElementDataFile = LOCAL\n" + b"\0" * 100)
    bomb = nib.Nifti1Header()
    bomb.set_data_shape((1000, 1000, 600))
    bomb.set_data_dtype(np.float32)
    with gzip.open(bad / "bomb.nii.gz", "wb", compresslevel=1) as stream:  # 2.4 GB of zeros, ~2 MB on disk
        stream.write(bytes(bomb.binaryblock) + b"\0" * 4)
        for _ in range(2_400_000_000 >> 24):
            stream.write(bytes(1 << 24))
    os.mkfifo(bad / "pipe_flair.nii.gz")
    piped = root / "piped"
    shutil.copytree(case, piped)
    (piped / "P1_seg.nii.gz").unlink()
    os.mkfifo(piped / "P1_seg.nii.gz")
    (bad / "empty").mkdir()
    slice_folder = root / "slice"
    slice_folder.mkdir()
    _nifti(slice_folder / "one_flair.nii.gz", np.ones((64, 64, 1), np.int16))
    raw = bytearray(_nifti(bad / "nan_affine.nii", np.ones((8, 8, 8), np.int16)).read_bytes())
    raw[252:256] = np.array([0, 1], "<i2").tobytes()  # qform_code 0, sform_code 1: the sform rules
    raw[280:284] = np.array([np.nan], "<f4").tobytes()  # srow_x[0]
    (bad / "nan_affine.nii").write_bytes(bytes(raw))
    (bad / "truncated.nii.gz").write_bytes((case / "P1_t1.nii.gz").read_bytes()[:2000])
    user = root / "user"
    user.mkdir()
    (user / "thesis.docx").write_text("precious")
    seg = nib.load(case / "P1_seg.nii.gz")
    _nifti(bad / "binary.nii.gz", (np.asarray(seg.dataobj) > 0).astype(np.uint8), seg.affine)
    one_epoch = ["--epochs", "1"]
    commands = [
        ("NRRD data file outside", ["info", str(bad / "out.nhdr")], 2, None),
        ("NRRD data file absolute", ["info", str(bad / "abs.nhdr")], 2, None),
        ("MetaImage data file outside", ["info", str(bad / "out.mhd")], 2, None),
        ("Analyze .hdr/.img pair", ["info", str(bad / "out.hdr")], 2, None),
        ("symlink out of the folder", ["info", str(bad / "link.nii.gz")], 2, None),
        ("symlink to /dev/zero", ["info", str(bad / "zero.nii")], 2, None),
        ("NIfTI declaring 4000^3", ["info", str(bad / "huge.nii")], 2, None),
        ("NIfTI.gz declaring 4000^3", ["info", str(bad / "huge.nii.gz")], 2, None),
        ("NRRD declaring 5000^3", ["info", str(bad / "huge.nrrd")], 2, None),
        ("MetaImage declaring 5000^3", ["info", str(bad / "huge.mha")], 2, None),
        ("gzip bomb (2.4 GB of zeros)", ["info", str(bad / "bomb.nii.gz")], 2, None),
        ("a pipe named like an image", ["info", str(bad / "pipe_flair.nii.gz")], 2, None),
        ("a pipe as a case's labels", ["info", str(piped)], 2, piped),
        ("a single slice", ["predict", str(slice_folder / "one_flair.nii.gz"), "-o", str(root / "o1.nii.gz")],
         2, slice_folder),
        ("NaN in the affine", ["info", str(bad / "nan_affine.nii")], 2, None),
        ("truncated .nii.gz", ["info", str(bad / "truncated.nii.gz")], 2, None),
        ("empty path", ["info", ""], 2, None),
        ("empty folder", ["predict", str(bad / "empty"), "-o", str(root / "o2.nii.gz")], 2, None),
        ("--resolution 0.001", ["prepare", str(case), "-o", str(root / "p1"), "--resolution", "0.001"], 2, None),
        ("--resolution nan", ["prepare", str(case), "-o", str(root / "p2"), "--resolution", "nan"], 2, None),
        ("--case-id ../../evil", ["prepare", str(case), "-o", str(root / "p3"), "--case-id", "../../evil"], 2, None),
        ("models activate ../..", ["models", "activate", "../../etc"], 2, None),
        ("train into a user's folder", ["train", str(root / "cases"), "--out", str(user), *one_epoch], 2, user),
        ("crossval into a user's folder", ["crossval", str(root / "cases"), "--out", str(user), *one_epoch], 2, user),
        ("prepare into a user's folder", ["prepare", str(case), "-o", str(user)], 2, user),
        ("finetune into a user's folder", ["finetune", str(case), "--val", str(other), "--out", str(user),
                                          *one_epoch], 2, user),
        ("experiment into a user's folder", ["experiment", str(root / "cases"), "--out", str(user), *one_epoch],
         2, user),
        ("predict over the case's labels", ["predict", str(case), "-o", str(case / "P1_seg.nii.gz")], 2, case),
        ("evaluate a 0/1 mask (a note)", ["evaluate", str(bad / "binary.nii.gz"), str(case / "P1_seg.nii.gz")],
         0, None),
    ]
    return commands, case


def check(name: str, args: list[str], expected: int, protect: Path | None, env: dict[str, str],
          scratch: Path) -> Outcome:
    before = _snapshot(protect)
    status, wall, peak, err = _brainseg(args, env, scratch)
    lines = err.splitlines()
    problems = []
    if status != expected:
        problems.append(f"exit {status}, not {expected}")
    if "Traceback" in err:
        problems.append("traceback")
    if expected == 2 and not (len(lines) == 1 and lines[0].startswith("brainseg: error: ")):
        problems.append(f"{len(lines)} stderr lines, not one error line")
    if wall > WALL_LIMIT_S:
        problems.append(f"over {WALL_LIMIT_S:.0f} s")
    if peak > MEMORY_LIMIT_MB:
        problems.append(f"over {MEMORY_LIMIT_MB} MB")
    if _snapshot(protect) != before:
        problems.append(f"{protect} changed")
    return Outcome(name, status, wall, peak, lines[-1] if lines else "", problems)


def main() -> int:
    scratch = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="brainseg-bad-"))
    if scratch.exists() and any(scratch.iterdir()):
        print(f"bad_inputs: {scratch} is not empty; give a new or empty folder", file=sys.stderr)
        return 2
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BRAINSEG_CACHE_DIR": str(scratch / "cache"), "XDG_DATA_HOME": str(scratch / "data"),
           "XDG_STATE_HOME": str(scratch / "state"), "XDG_CONFIG_HOME": str(scratch / "config")}
    try:
        commands, case = build(scratch)
        _, reference_s, reference_mb, _ = _brainseg(["info", str(case)], env, scratch)
        print(f"reference: brainseg info on a good case, {reference_s:.2f} s, {reference_mb:.0f} MB")
        print(f"{'input':34s} {'exit':>4s} {'wall s':>7s} {'x ref':>6s} {'peak MB':>8s}  outcome")
        outcomes = [check(*command, env, scratch) for command in commands]
        for o in outcomes:
            verdict = "ok" if not o.problems else "BROKEN: " + "; ".join(o.problems)
            print(f"{o.name:34s} {o.status:4d} {o.wall_s:7.2f} {o.wall_s / reference_s:6.2f} {o.peak_mb:8.0f}  "
                  f"{verdict} | {o.last_line[:160]}")
        broken = [o for o in outcomes if o.problems]
        slowest = max(outcomes, key=lambda o: o.wall_s)
        largest = max(outcomes, key=lambda o: o.peak_mb)
        print(f"{len(outcomes) - len(broken)} of {len(outcomes)} bad inputs handled; slowest {slowest.wall_s:.1f} s "
              f"({slowest.name}), largest {largest.peak_mb:.0f} MB ({largest.name})")
        return 1 if broken else 0
    finally:
        if len(sys.argv) <= 1:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
