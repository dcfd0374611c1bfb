#!/usr/bin/env bash
# Install BrainSeg for development into ./.venv: idempotent, and silent when already done.
#
# torch==2.13.0 is installed FIRST, on its own: on these machines that is the CPU wheel lying on the
# local disk. Installing the project afterwards finds "torch>=2.4 already satisfied" and never pulls
# another (CUDA) build. A stamp keyed on pyproject.toml (and this script) skips the pip steps when
# nothing changed; delete .venv/.brainseg-setup to force them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TORCH_PIN="torch==2.13.0"
VENV=".venv"
STAMP="$VENV/.brainseg-setup"

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "setup: error: BrainSeg needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    python=$(pick_python)
    echo "setup: creating $VENV with $python" >&2
    "$python" -m venv "$VENV"
fi

key=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] \
    && "$VENV/bin/python" -c 'import brainseg_gui' >/dev/null 2>&1; then
    exit 0
fi

echo "setup: installing $TORCH_PIN, then BrainSeg (editable, with test tools) into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet "$TORCH_PIN"
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
echo "$key" >"$STAMP"
echo "setup: done" >&2
