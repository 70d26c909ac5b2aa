#!/usr/bin/env bash
# The study of issue 25 on two CPU cores (docs/TRAINING.md "The CPU recipe", docs/RESULTS.md):
# the three losses (plain MSE, SA-ICM edge loss, region learning) as equal-budget fine-tunes of
# one shared plain-MSE variable-rate base, then one `saicm eval` of them against VVC intra
# (QP 63-27, so that the curves overlap), HEVC, WebP, AVIF and the twelve shipped fixed-rate models
# on the detector.
#
# Usage: bash docs/scripts/study_cpu.sh [STEPS [IMAGES [OUT]]]
#   STEPS   fine-tuning steps of each loss (default 1000: about 30 minutes each on two cores;
#           the three 1000-step fine-tunes are committed: copy docs/results/issue25/
#           {mse,sa-icm,region}-vbr-ft1k.pt to runs/ft1000/{mse,edge,region}/model.pt to only
#           evaluate them, about 1 h 10 min on two idle cores)
#   IMAGES  the evaluation images (default data/offline/val, the 200 of RESULTS.md)
#   OUT     the evaluation folder (default runs/study/val200)
# Resumable: run it again after a kill. A finished model is kept, an unfinished run continues
# from its last checkpoint, and the evaluation reuses every cell it has already written.
# BASE=path picks another base (default: the committed snapshot); RUNS=dir the fine-tunes folder.
set -euo pipefail
SAICM=${SAICM:-saicm}
D=${DATA:-data/offline}
STEPS=${1-1000}
IMAGES=${2:-$D/val}
OUT=${3:-runs/study/val200}
BASE=${BASE:-docs/results/issue25/mse-vbr-base-1500.pt}

die() { echo "study_cpu.sh: $*" >&2; exit 2; }
(( $# <= 3 )) || die "at most three arguments (STEPS IMAGES OUT), not $#"
[[ $STEPS =~ ^[1-9][0-9]{0,6}$ ]] || die "STEPS is a number of steps from 1 to 9999999, not '$STEPS'"
[[ -f $BASE ]] || die "$BASE: no such base model (BASE=)"
if (( $# >= 2 )); then  # given images are checked before the corpus is built
    [[ -e $IMAGES ]] || die "$IMAGES: no such evaluation images"
fi
[[ -d $D/train ]] || "$SAICM" data offline-corpus -o "$D"
[[ -e $IMAGES ]] || die "$IMAGES: no such evaluation images"  # before hours of training
if [[ ! -d data/race-val ]]; then  # 13 validation images for the runs' own validation
    mkdir -p data/race-val
    ls "$D/val" | awk 'NR%16==1' | while read -r f; do cp "$D/val/$f" data/race-val/; done
fi
R=${RUNS:-runs/ft$STEPS}
# The masks only where a fine-tune still has to train (they are cached and resumable as well).
[[ -f $R/edge/model.pt ]] || "$SAICM" masks "$D/train" -o "$D/masks-hed" --source hed
[[ -f $R/region/model.pt ]] || "$SAICM" masks "$D/train" -o "$D/masks-objects" --source objects

# Every loss: the base's weights, Adam 1e-4 with a cosine decay to the end (compare only decayed
# models), the same batch, crops and images. The edge loss counts only edge pixels and region
# learning mostly object pixels, so at equal rate they take lambdas about 4x and 8x plain MSE's
# (the shipped families' ratio); range and step-1 lambda move by that factor, so every anchor
# quantises with the base's step.
COMMON=(--images "$D/train" --arch mbt2018-mean-vbr --batch-size 8 --crop 128 --steps "$STEPS"
        --val-images data/race-val --val-every "$STEPS" --checkpoint-every 100 --log-every 50
        --init "$BASE" --lr 1e-4 --schedule cosine --warmup 100)
run() {  # run DIR ARGS...: train DIR unless its model is already exported
    local dir=$1; shift
    [[ -f $dir/model.pt ]] && return 0
    if [[ -f $dir/checkpoint.pt ]]; then
        "$SAICM" train -o "$dir" --resume
    else
        "$SAICM" train "${COMMON[@]}" "$@" -o "$dir"
    fi
}
run $R/mse --loss mse --lmbda-range 0.0018 0.18 --unit-step-lmbda 0.013 --name mse-vbr-ft
run $R/edge --loss edge --masks "$D/masks-hed" --lmbda-range 0.0072 0.72 --unit-step-lmbda 0.052 \
    --name sa-icm-vbr-ft
run $R/region --loss region --masks "$D/masks-objects" --object-crops 0.5 --outside-weight 0.1 \
    --lmbda-range 0.0144 1.44 --unit-step-lmbda 0.104 --name region-vbr-ft

# Five points per model at the same anchors (lambda x1, x4, x8 per loss), and the twelve shipped
# fixed-rate models (each loss and lambda from random weights), which a fine-tune must beat to be
# shipped.
E=sa-icm-mbt-hed
"$SAICM" eval --images "$IMAGES" --task detection --workers 2 --bootstrap 200 --anchor vvc mse \
    --codec vvc:63,60,57,55,52,50,47,42,37,32,27 hevc:51,47,42,37,32,27 webp:5,20,40,80 \
    avif:10,30,50,70 \
    mse=saicm:$R/mse/model.pt@0.0018,0.0067,0.025,0.0932,0.18 \
    sa-icm=saicm:$R/edge/model.pt@0.0072,0.0268,0.1,0.373,0.72 \
    region=saicm:$R/region/model.pt@0.0144,0.0536,0.2,0.746,1.44 \
    mse-mbt=saicm:mse-mbt-0.0018,mse-mbt-0.0035,mse-mbt-0.0067,mse-mbt-0.013 \
    sa-icm-mbt=saicm:$E-0.007,$E-0.014,$E-0.027,$E-0.05 \
    region-mbt=saicm:region-mbt-0.007,region-mbt-0.015,region-mbt-0.04,region-mbt-0.1 \
    -o "$OUT"
