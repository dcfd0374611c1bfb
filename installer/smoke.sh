#!/usr/bin/env bash
# Build the application bundle, then run the built binary headless and check it against the
# installed package:
#   1. `brainseg --version` (app and model versions, from inside the bundle);
#   2. the import self-test: every module the app loads lazily (MONAI, SimpleITK, highdicom, VTK, Qt);
#   3. `brainseg predict` on a case (the first real BraTS case in ../shared/data, else the synthetic
#      phantom) by the bundle and by .venv's brainseg: the two label maps are compared voxel by voxel;
#   4. the viewer started on that case under a virtual X screen (Xvfb), first as a user would
#      (it must still be running after 45 s) and then once more to save a screenshot of the study.
# It prints the bundle's size and the build time. Exit status 0 only when every step passed.
#
#   bash installer/smoke.sh              # build, then test
#   SKIP_BUILD=1 bash installer/smoke.sh # test the bundle already in installer/dist/brainseg
#
# Outputs go to installer/dist/smoke/ (git-ignored). Takes 15-25 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
BUNDLE="installer/dist/brainseg"
BIN="$BUNDLE/brainseg"
OUT="installer/dist/smoke"
DATA="${BRAINSEG_SHARED_DATA:-../shared/data}"

failures=0
step() { echo; echo "== $*"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
since() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01d' $((ms / 1000)) $(((ms % 1000) / 100)); }
fail() { echo "smoke: FAILED: $*" >&2; failures=$((failures + 1)); }

build_line="build: not built by this run (SKIP_BUILD=1)"
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    step "build"
    log=$(mktemp)
    VENV="$VENV" bash installer/build.sh 2>&1 | tee "$log"
    build_line=$(grep '^build: build time' "$log" || echo "build: build time unknown")
    rm -f "$log"
fi
[ -x "$BIN" ] || { echo "smoke: no bundle at $BIN (run without SKIP_BUILD)" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"
# the smoke runs must not touch the user's settings (the welcome's "shown" flag, recent studies)
export XDG_CONFIG_HOME="$PWD/$OUT/config"

step "brainseg --version (bundle)"
started=$(now_ms)
if version=$("$BIN" --version); then
    echo "$version"
    echo "(started and answered in $(since "$started") s)"
    grep -q '^model: ' <<<"$version" && ! grep -q 'no model installed\|weights are missing' <<<"$version" \
        || fail "--version does not name a shipped model"
else
    fail "--version exited with $?"
fi

step "import self-test (bundle)"
BRAINSEG_BUNDLE_SELFTEST=imports "$BIN" || fail "modules missing from the bundle"

step "case"
case_dir=$(find "$DATA/brats2021" "$DATA/brats2018" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort | head -n 1 || true)
if [ -z "$case_dir" ]; then
    echo "no real case under $DATA: using the synthetic phantom"
    case_dir=$("$VENV/bin/python" -c "import sys; from pathlib import Path
from brainseg_gui.core.phantom import write_phantom_case
print(write_phantom_case(Path(sys.argv[1]), seed=7, case_id='phantom'))" "$OUT/cases")
fi
echo "case: $case_dir"

step "predict: bundle, then installed package"
start=$(now_ms)
"$BIN" predict "$case_dir" -o "$OUT/bundle.nii.gz" --device cpu || fail "bundle predict exited with $?"
bundle_s=$(since "$start")
start=$(now_ms)
"$VENV/bin/brainseg" predict "$case_dir" -o "$OUT/package.nii.gz" --device cpu || fail "package predict exited with $?"
package_s=$(since "$start")
echo "predict wall time: bundle ${bundle_s} s, package ${package_s} s (each including start-up)"
agreement="not compared"
if [ -f "$OUT/bundle.nii.gz" ] && [ -f "$OUT/package.nii.gz" ]; then
    agreement=$("$VENV/bin/python" installer/compare.py "$OUT/bundle.nii.gz" "$OUT/package.nii.gz") \
        || fail "bundle and package predictions differ"
    echo "$agreement"
fi

step "viewer under a virtual screen"
gui_result="not run"
display_ok=0
if command -v Xvfb >/dev/null 2>&1; then
    number=$(( 90 + RANDOM % 400 ))
    Xvfb ":$number" -screen 0 1600x1000x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
    xvfb_pid=$!
    trap 'kill "$xvfb_pid" 2>/dev/null || true' EXIT
    sleep 2
    if kill -0 "$xvfb_pid" 2>/dev/null; then
        export DISPLAY=":$number" QT_QPA_PLATFORM=xcb
        display_ok=1
    fi
fi
if [ "$display_ok" = 0 ]; then
    echo "no Xvfb: using Qt's offscreen platform (the 3D view may be unavailable)"
    export QT_QPA_PLATFORM=offscreen
fi
# as a user starts it (a first start: the welcome opens over the study); it must stay up
set +e
timeout 45 "$BIN" "$case_dir" >"$OUT/gui.log" 2>&1
status=$?
set -e
if [ "$status" = 124 ] && ! grep -q 'Traceback\|brainseg: error' "$OUT/gui.log"; then
    gui_result="started on the case and still running after 45 s ($QT_QPA_PLATFORM)"
else
    fail "the viewer exited with $status within 45 s (log: $OUT/gui.log)"
    gui_result="exited with $status"
    tail -n 20 "$OUT/gui.log" >&2 || true
fi
BRAINSEG_NO_WELCOME=1 BRAINSEG_BUNDLE_SELFTEST="gui:$case_dir:$PWD/$OUT/viewer.png" "$BIN" \
    || fail "the viewer did not show the case"
echo "viewer: $gui_result"

step "summary"
size_mb=$(du -sm "$BUNDLE" | cut -f1)
files=$(find "$BUNDLE" -type f | wc -l)
echo "bundle: $BUNDLE, ${size_mb} MB in ${files} files"
echo "$build_line"
echo "predict agreement (bundle vs package): $agreement"
echo "viewer: $gui_result; screenshot $OUT/viewer.png"
if [ "$failures" -gt 0 ]; then
    echo "smoke: $failures step(s) FAILED" >&2
    exit 1
fi
echo "smoke: all steps passed"
