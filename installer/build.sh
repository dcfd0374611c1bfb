#!/usr/bin/env bash
# Build the one-folder application bundle: installer/dist/brainseg/ (git-ignored), whose
# `brainseg` executable is the whole app (viewer, CLI, shipped model). Prints its size and the build time.
#
#   bash installer/build.sh                  # with ./.venv (set up by scripts/setup.sh: CPU torch)
#   VENV=/path/to/venv bash installer/build.sh   # e.g. a venv holding a CUDA torch build
#
# PyInstaller is installed into the venv when missing (it is a build tool, not a dependency).
# On a 2-core machine the build takes 10-15 minutes; the work folder installer/build/ is reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
PYINSTALLER_PIN="pyinstaller>=6.10,<7"
DIST="installer/dist"
WORK="installer/build"

if [ ! -x "$VENV/bin/python" ]; then
    bash scripts/setup.sh
fi
py="$VENV/bin/python"
if ! "$py" -c 'import PyInstaller' >/dev/null 2>&1; then
    echo "build: installing $PYINSTALLER_PIN into $VENV" >&2
    "$py" -m pip install --quiet "$PYINSTALLER_PIN"
fi
if "$py" -c 'import torchvision' >/dev/null 2>&1; then
    echo "build: note: torchvision is installed in $VENV; the spec excludes it from the bundle" >&2
fi

started=$(date +%s)
"$py" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" installer/brainseg.spec
seconds=$(( $(date +%s) - started ))

bundle="$DIST/brainseg"
size_mb=$(du -sm "$bundle" | cut -f1)
files=$(find "$bundle" -type f | wc -l)
torch_build=$("$py" -c 'import torch; print(torch.__version__)')
echo "build: bundle $bundle: ${size_mb} MB in ${files} files (torch $torch_build)"
echo "build: build time ${seconds} s"
