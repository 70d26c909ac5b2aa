#!/usr/bin/env bash
# The equal-budget, from-scratch study of docs/RESULTS.md ("From scratch on a GPU"): every loss
# and lambda of a set trained from random weights for the same number of steps, all of the set's
# runs side by side on one GPU (small models leave most of an H100 idle when run one at a time).
#
# Usage: bash docs/scripts/study_gpu.sh SET STEPS [RUNS_DIR]
#   SET    a: plain MSE and SA-ICM (Eq. 5, HED edges), four lambdas each
#          b: region learning (object crops, 0.1 outside) and SA-ICM with wider edges and 0.1
#             outside, four lambdas each
#          c: SA-ICM with HED edges and 0.1 outside, and with wider edges alone, four lambdas each
#          rep: two runs of set a again: GPU kernels are not deterministic, so this shows how far
#             apart two trainings of one setting land
#          vbr: one variable-rate model (mbt2018-mean-vbr) per loss over the lambdas of its four
#             fixed-rate siblings of sets a and b; give it their total budget (4 x their steps,
#             e.g. 17000 against 4250) for the equal-budget comparison of docs/RESULTS.md
#   STEPS  steps of every run, or auto:SECONDS: the largest multiple of 250 steps that the whole
#          set, side by side, finishes in SECONDS (timed on 150 steps first; printed, so that a
#          later set can be given the same number)
# Resumable like study.sh: a finished run is kept, an unfinished one continues from its checkpoint.
set -euo pipefail
SAICM=${SAICM:-saicm}
D=${DATA:-data/offline}
SET=${1:?usage: study_gpu.sh SET STEPS [RUNS_DIR]}
STEPS=${2:?usage: study_gpu.sh SET STEPS [RUNS_DIR]}
RUNS=${3:-runs}
COMMON=(--images "$D/train" --arch mbt2018-mean --crop 256 --batch-size 8 --lr 3e-4
        --checkpoint-every 500 --log-every 50)

case $SET in
a) SPECS=()
   for l in 0.0018 0.0035 0.0067 0.013; do SPECS+=("scratch-mse-$l --loss mse --lmbda $l"); done
   for l in 0.007 0.014 0.027 0.05; do
       SPECS+=("scratch-sa-icm-hed-$l --loss edge --masks $D/masks-hed --lmbda $l")
   done ;;
b) SPECS=()
   for l in 0.007 0.015 0.04 0.1; do
       SPECS+=("scratch-region-$l --loss region --masks $D/masks-objects --lmbda $l
                --object-crops 0.5 --outside-weight 0.1")
   done
   # HED edges dilated by a radius of 3 px (24.6% of the pixels), errors outside counting 0.1:
   # the loss weight per image is ~0.32 of plain MSE's, so these lambdas match plain MSE's range.
   for l in 0.005 0.01 0.02 0.04; do
       SPECS+=("scratch-sa-icm-hed3-w0.1-$l --loss edge --masks $D/masks-hed-w3 --lmbda $l
                --outside-weight 0.1")
   done ;;
c) SPECS=()  # the other two corners of edge width x outside weight
   for l in 0.007 0.014 0.027 0.05; do
       SPECS+=("scratch-sa-icm-hed-w0.1-$l --loss edge --masks $D/masks-hed --lmbda $l
                --outside-weight 0.1")
       SPECS+=("scratch-sa-icm-hed3-$l --loss edge --masks $D/masks-hed-w3 --lmbda $l")
   done ;;
rep) SPECS=("rep-mse-0.0067 --loss mse --lmbda 0.0067"  # two runs of set a once more
             "rep-sa-icm-hed-0.027 --loss edge --masks $D/masks-hed --lmbda 0.027") ;;
vbr) SPECS=("scratch-vbr-mse --loss mse --arch mbt2018-mean-vbr --lmbda-range 0.0018 0.013"
            "scratch-vbr-sa-icm-hed --loss edge --masks $D/masks-hed --arch mbt2018-mean-vbr
             --lmbda-range 0.007 0.05"
            "scratch-vbr-region --loss region --masks $D/masks-objects --object-crops 0.5
             --outside-weight 0.1 --arch mbt2018-mean-vbr --lmbda-range 0.007 0.1") ;;
*) echo "study_gpu.sh: unknown set $SET (a, b, c, rep or vbr)" >&2; exit 2 ;;
esac

# The data of study.sh; made here only where missing, so that a GPU machine with no HED weights
# can take folders made elsewhere.
[[ -d $D/train ]] || $SAICM data offline-corpus -o "$D" --first-corpus  # the study's set
[[ -d $D/masks-hed ]] || $SAICM masks "$D/train" -o "$D/masks-hed" --source hed
[[ -d $D/masks-objects ]] || $SAICM masks "$D/train" -o "$D/masks-objects" --source objects
[[ -d $D/masks-hed-w3 ]] || $SAICM masks "$D/train" -o "$D/masks-hed-w3" --source hed --edge-width 3

launch() {  # launch DIR STEPS: every run of the set in the background, one log each
    local dir=$1 steps=$2 pids=() spec name args resume
    mkdir -p "$dir"
    for spec in "${SPECS[@]}"; do
        read -r name args <<<"$(echo $spec)"
        [[ -f $dir/$name/model.pt ]] && continue
        resume=""
        [[ -f $dir/$name/checkpoint.pt ]] && resume=--resume
        # shellcheck disable=SC2086
        $SAICM train -o "$dir/$name" --name "$name" "${COMMON[@]}" $args --steps "$steps" \
            $resume >"$dir/$name.log" 2>&1 &
        pids+=($!)
    done
    local failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    return $failed
}

if [[ $STEPS == auto:* ]]; then
    budget=${STEPS#auto:}
    timing=$(mktemp -d)
    launch "$timing" "${TIMING_STEPS:-150}"
    # images/s of the slowest run since its loop started (process start-up left out, the first
    # steps' warm-up kept in: the estimate errs on the safe side)
    STEPS=$(python3 - "$timing" "$budget" <<'EOF'
import csv, pathlib, sys
runs = pathlib.Path(sys.argv[1]).glob("*/train.csv")
rate = min(float(list(csv.DictReader(open(p)))[-1]["images_per_s"]) for p in runs)
print(max(250, int(float(sys.argv[2]) * rate / 8) // 250 * 250))
EOF
)
    echo "study_gpu.sh: set $SET side by side: $STEPS steps a run fit ${budget}s"
    rm -rf "$timing"
fi
echo "study_gpu.sh: set $SET, $STEPS steps a run, into $RUNS"
launch "$RUNS" "$STEPS"
# One folder of links per family (runs/families/FAMILY/LAMBDA.pt): saicm eval takes a folder of
# model files as one rate-accuracy curve.
for spec in "${SPECS[@]}"; do
    read -r name _ <<<"$(echo $spec)"
    [[ $name == scratch-vbr-* ]] && continue  # a variable-rate model is a curve on its own
    family=${name%-*}
    mkdir -p "$RUNS/families/$family"
    ln -sfn "$(cd "$RUNS/$name" && pwd)/model.pt" "$RUNS/families/$family/${name##*-}.pt"
done
