#!/usr/bin/env bash
# The full-width models of the synthetic benchmark: ResNet-18 at width 1.0, 8 segments, 112 px, 10 classes (TSM,
# AdaFuse-TSM from the TSM, GSF), trained on CPU by `edgefuse train`, stored as float16 in weights/full_width/ (a zoo
# folder outside the installed package: its pretrained.json records each command, accuracy and sha256; load them
# with EDGEFUSE_ZOO_DIR=weights/full_width).
#
#     bash benchmarks/train_full_width.sh            # DATA=... WORK=... THREADS=... MODELS="tsm adafuse gsf"
#
# The zoo's recipe (30 epochs, lr 0.01, cosine): on 8 epochs a width-1.0 TSM stayed at chance (val top-1 7-13% after
# every epoch); the width-0.25 zoo TSM itself only left chance at epoch 5 of 30. One epoch of a width-1.0 TSM takes
# about 7 min with one torch thread on a 2-core AMD EPYC (GSF about 10), so a model is 3.5-5 hours: more than one
# sitting. Every run therefore keeps its state in WORK (--resume, written after each epoch): run the script again and
# each model goes on from its last finished epoch; finished models (in weights/full_width) are skipped. AdaFuse-TSM
# starts once the TSM is finished. Sharing the cores with other work slows a step up to 3x.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/tmp/edgefuse-synth}
WORK=${WORK:-/tmp/edgefuse-full-width}
THREADS=${THREADS:-1}
MODELS=${MODELS:-tsm adafuse gsf}
export EDGEFUSE_ZOO_DIR=$PWD/weights/full_width
mkdir -p "$EDGEFUSE_ZOO_DIR" "$WORK"
[ -f "$DATA/train.txt" ] || edgefuse synth -o "$DATA" --formats frames
common=(--data "$DATA" --width 1.0 --segments 8 --size 112 --batch-size 16 --seed 0 --threads "$THREADS" --workers 1
        --half)
done_() { [ -f "$EDGEFUSE_ZOO_DIR/$1.pth" ]; }
for m in $MODELS; do
  case $m in
    tsm) done_ synth_tsm_r18w1 || edgefuse train tsm_resnet18 "${common[@]}" --epochs 30 --lr 0.01 \
           --resume "$WORK/tsm.state" -o "$WORK/tsm.pth" --zoo-name synth_tsm_r18w1 --zoo-tag synth_w1 ;;
    adafuse) done_ synth_adafuse_tsm_r18w1 || { done_ synth_tsm_r18w1 || { echo "AdaFuse-TSM waits for the TSM"; continue; }
           edgefuse train adafuse_tsm_resnet18 "${common[@]}" --init "$WORK/tsm.pth" --keep-bias 2 \
           --efficiency-weight 2 --epochs 15 --lr 0.005 --resume "$WORK/adafuse_tsm.state" -o "$WORK/adafuse_tsm.pth" \
           --zoo-name synth_adafuse_tsm_r18w1 --zoo-tag synth_w1; } ;;
    gsf) done_ synth_gsf_r18w1 || edgefuse train gsf_resnet18 "${common[@]}" --epochs 30 --lr 0.01 \
           --resume "$WORK/gsf.state" -o "$WORK/gsf.pth" --zoo-name synth_gsf_r18w1 --zoo-tag synth_w1 ;;
    *) echo "unknown model $m: use tsm, adafuse, gsf" >&2; exit 2 ;;
  esac
done
edgefuse models 'synth_*_r18w1'
