#!/usr/bin/env bash
# Install when needed, then run BrainSeg: `bash scripts/start.sh [STUDY]` opens the viewer (on the
# built-in demo study when no study is given); any `brainseg` arguments pass through, e.g.
# `bash scripts/start.sh info --demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/brainseg "$@"
