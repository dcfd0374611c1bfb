#!/usr/bin/env bash
# Install when needed, then run the test suite; extra arguments go to pytest
# (e.g. `bash scripts/test.sh tests/core -k metrics`, `bash scripts/test.sh -m "not slow"`).
#
# The VTK 3D view needs a real (virtual) X screen, so the tests run under `xvfb-run` when it and
# Qt's xcb libraries are installed; otherwise Qt's offscreen platform is used (VTK-in-Qt tests then
# render off screen or skip). pytest's exit status is this script's exit status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

has_xcb_libs() {
    command -v ldconfig >/dev/null 2>&1 || return 1
    local libs
    libs=$(ldconfig -p 2>/dev/null) || return 1
    grep -q 'libxcb-icccm.so.4' <<<"$libs" && grep -q 'libxcb-keysyms.so.1' <<<"$libs" \
        && grep -q 'libxkbcommon-x11.so.0' <<<"$libs"
}

if command -v xvfb-run >/dev/null 2>&1 && has_xcb_libs; then
    export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-xcb}"
    exec xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python -m pytest -q "$@"
fi
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
exec .venv/bin/python -m pytest -q "$@"
