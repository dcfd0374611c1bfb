#!/usr/bin/env bash
# Issue 22: the 4-fold cross-validation and the all-16 model, trained with the CPU recipe (the defaults
# of `brainseg train`: 4 x 64^3 patches a step, bf16 where the CPU computes it) and scored at full
# resolution. Resumable: after any interruption, or on a fresh machine given the same RUNS folder, run
# the same line again; a finished fold is read back, an unfinished one continues from its last epoch.
#
#   nohup nice -n 19 scripts/train_cpu_cv.sh [RUNS] > /dev/null 2>&1 &     (~2 h a fold on 2 cores)
#
# 36 epochs (3,600 steps) so that one fold fits in one working session: sessions here last 3 hours and
# may start on a fresh machine, where RUNS from the last one is gone.
#
# RUNS (default runs/, ignored by git) gets cv/fold0..3 with cv/summary.md, all16/, cache/ and logs/.
# CV_RECORD (default docs/crossval/per_case.csv, in git) holds the held-out figures of folds trained in
# earlier sessions: those folds are not trained again, and the final table takes them from it
# (`brainseg crossval --earlier`). After a fold finishes, copy RUNS/cv/per_case.csv there and commit it.
# BRAINSEG_DATA (default ../shared/data) holds brats2017/, brats2018/ and brats2021/; TRAIN_OPTIONS adds
# options to every `brainseg train` (the test runs the chain with `--epochs 1 --steps-per-epoch 1`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
DATA=${BRAINSEG_DATA:-../shared/data}
SETS=("$DATA/brats2017" "$DATA/brats2018" "$DATA/brats2021")
# shellcheck disable=SC2206  # TRAIN_OPTIONS is a list of options, split as words on purpose
RECIPE=(--epochs 36 --seed 0 --device cpu --cache "$RUNS/cache" ${TRAIN_OPTIONS:-})
BRAINSEG=.venv/bin/brainseg
RECORD=${CV_RECORD:-docs/crossval/per_case.csv}
mkdir -p "$RUNS/logs"

recorded() {  # FOLD: its figures are in RECORD (the first column of per_case.csv is the fold)
    [ -f "$RECORD" ] && awk -F, -v fold="$1" 'NR > 1 && $1 == fold { found = 1 } END { exit !found }' "$RECORD"
}

train() {  # OUT LOG OPTION...: a new run into OUT, or the one there resumed (a finished one returns at once)
    local out=$1 log=$2
    shift 2
    local resume=()
    [ -d "$out/training" ] && resume=(--resume)
    echo "$(date -u +%FT%TZ) brainseg train --out $out $*" >> "$RUNS/logs/$log"
    "$BRAINSEG" train "${SETS[@]}" --out "$out" "${RECIPE[@]}" "${resume[@]}" "$@" >> "$RUNS/logs/$log" 2>&1
}

train_fold() {
    if [ ! -f "$RUNS/cv/fold$1/card.json" ] && recorded "$1"; then
        echo "$(date -u +%FT%TZ) fold $1: its figures are in $RECORD; not trained again" >> "$RUNS/logs/fold$1.log"
        return
    fi
    train "$RUNS/cv/fold$1" "fold$1.log" --folds 4 --fold "$1"
}
# Fold 0 first, then the all-16 model: fold 0 is the shipped model's own split, so it alone decides whether
# the all-16 model may ship (model/README.md); folds 1-3 then complete the cross-validated table.
train_fold 0
train "$RUNS/all16" all16.log --val-fraction 0
for k in 1 2 3; do train_fold "$k"; done
earlier=()
[ -f "$RECORD" ] && earlier=(--earlier "$RECORD")
"$BRAINSEG" crossval "${SETS[@]}" --out "$RUNS/cv" --folds 4 --evaluate-only "${earlier[@]}" \
    >> "$RUNS/logs/crossval.log" 2>&1
echo "$(date -u +%FT%TZ) done: $RUNS/cv/summary.md, $RUNS/all16" >> "$RUNS/logs/crossval.log"
