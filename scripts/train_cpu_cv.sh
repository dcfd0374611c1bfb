#!/usr/bin/env bash
# Issue 22: the 4-fold cross-validation and the all-16 model, trained with the CPU recipe (the defaults
# of `brainseg train`: 4 x 64^3 patches a step, bf16 where the CPU computes it) and scored at full
# resolution. Each fold is scored by its last epoch (OUT/last), the model the all-16 run ships: that run
# has no held-out case to pick an epoch with, and a fold's best epoch, picked on the very cases it is then
# scored on, flatters the recipe. The runs also keep a moving average of G (--ema, OUT/ema: it only
# watches, G trains the same); over folds 1-2 it scored no better than the last epoch (model/README.md).
# Resumable: after any interruption, or on a fresh machine given the same RUNS folder, run the same line
# again; a finished fold is read back, an unfinished one continues from its last epoch.
#
#   nohup nice -n 19 scripts/train_cpu_cv.sh [RUNS] > /dev/null 2>&1 &     (~2 h a fold on 2 cores)
#
# 36 epochs (3,600 steps) so that one fold fits in one working session: sessions here last 3 hours and
# may start on a fresh machine, where RUNS from the last one is gone. So each finished fold is scored at
# once and its held-out figures are written to CV_RECORD (default docs/crossval/per_case.csv, in git:
# commit it); a fold recorded there is not trained again, and every table takes the recorded folds from
# it (`brainseg crossval --earlier`). A record of another split is refused before any training.
# Order: folds 0-3, then the model on all 16 cases (skipped once the shipped model is one), which may
# ship only when the cross-validated table says the recipe is not worse than the shipped model's: its
# model is RUNS/all16 (its last epoch: nothing is held out to pick another).
#
# RUNS (default runs/, ignored by git) gets cv/fold0..3 with cv/summary.md, all16/, cache/ and logs/.
# BRAINSEG_DATA (default ../shared/data) holds brats2017/, brats2018/ and brats2021/; TRAIN_OPTIONS adds
# options to every `brainseg train` (the test runs the chain with `--epochs 1 --steps-per-epoch 1`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
DATA=${BRAINSEG_DATA:-../shared/data}
SETS=("$DATA/brats2017" "$DATA/brats2018" "$DATA/brats2021")
# shellcheck disable=SC2206  # TRAIN_OPTIONS is a list of options, split as words on purpose
SCORED=(--weights last)  # what each fold is scored by: what the all-16 run delivers
RECIPE=(--epochs 36 --ema 0.999 --seed 0 --device cpu --cache "$RUNS/cache" ${TRAIN_OPTIONS:-})
BRAINSEG=.venv/bin/brainseg
RECORD=${CV_RECORD:-docs/crossval/per_case.csv}
mkdir -p "$RUNS/logs"

log() { echo "$(date -u +%FT%TZ) $2" >> "$RUNS/logs/$1"; }

recorded() {  # FOLD: its figures are in RECORD (the first column of per_case.csv is the fold)
    [ -f "$RECORD" ] && awk -F, -v fold="$1" 'NR > 1 && $1 == fold { found = 1 } END { exit !found }' "$RECORD"
}

score() {  # every fold trained in RUNS/cv plus those in RECORD -> RUNS/cv reports, then RECORD
    local earlier=()
    [ -f "$RECORD" ] && earlier=(--earlier "$RECORD")
    log crossval.log "brainseg crossval --evaluate-only ${earlier[*]}"
    "$BRAINSEG" crossval "${SETS[@]}" --out "$RUNS/cv" --folds 4 --seed 0 --evaluate-only "${SCORED[@]}" "${earlier[@]}" \
        >> "$RUNS/logs/crossval.log" 2>&1
    mkdir -p "$(dirname "$RECORD")"
    cp "$RUNS/cv/per_case.csv" "$RECORD.tmp" && mv "$RECORD.tmp" "$RECORD"
}

train() {  # OUT LOG OPTION...: a new run into OUT, or the one there resumed (a finished one returns at once)
    local out=$1 log=$2
    shift 2
    local resume=()
    [ -d "$out/training" ] && resume=(--resume)
    log "$log" "brainseg train --out $out $*"
    "$BRAINSEG" train "${SETS[@]}" --out "$out" "${RECIPE[@]}" "${resume[@]}" "$@" >> "$RUNS/logs/$log" 2>&1
}

train_fold() {
    if [ ! -f "$RUNS/cv/fold$1/card.json" ] && recorded "$1"; then
        log "fold$1.log" "fold $1: its figures are in $RECORD; not trained again"
        return
    fi
    train "$RUNS/cv/fold$1" "fold$1.log" --folds 4 --fold "$1"
    recorded "$1" || score  # a fold recorded already (trained here before) was scored then
}

shipped_on_every_case() {  # the shipped model held no case out: the all-cases model already ships
    .venv/bin/python -c 'import json, sys; card = json.load(open("model/card.json"))
sys.exit(0 if card["training"]["validation_cases"] == [] else 1)'
}

[ -f "$RECORD" ] && score  # a record of another split (seed, folds, cases) stops here, before hours of training
for k in 0 1 2 3; do train_fold "$k"; done
if shipped_on_every_case; then
    log all16.log "the shipped model is already trained on every case; not trained again"
else
    train "$RUNS/all16" all16.log --val-fraction 0
fi
score
log crossval.log "done: $RUNS/cv/summary.md, $RECORD, $RUNS/all16"
