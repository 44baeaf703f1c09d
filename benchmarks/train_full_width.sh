#!/usr/bin/env bash
# The full-width models of the synthetic benchmark: ResNet-18 at width 1.0, 8 segments, 10 classes (TSM, AdaFuse-TSM
# from the TSM, GSF), trained on CPU by `edgefuse train` and stored as float16 in weights/full_width/ (a zoo folder
# outside the installed package: its pretrained.json records every stage's command, the accuracy and the sha256; load
# them with EDGEFUSE_ZOO_DIR=weights/full_width).
#
#     bash benchmarks/train_full_width.sh       # DATA=... WORK=... THREADS=1 MODELS="tsm adafuse gsf"
#     MODELS="tsm adafuse" bash benchmarks/train_full_width.sh & MODELS=gsf bash benchmarks/train_full_width.sh
#                                               # the two chains side by side, one core each
#
# Two stages per network, as progressive resizing: most epochs at 64 px (a third of the cost of 112 px), then a few
# at 112 px from those weights (--init), the size the models are used at. Why: from scratch, the network sits at chance
# for several epochs before it finds the motion. At 112 px with SGD at lr 0.01 (the width-0.25 zoo's recipe) a
# width-1.0 TSM was still at chance after 7 epochs of 7 min (one thread), so the zoo's 30 epochs would take 3.5 h
# (GSF 5 h). At 64 px the same TSM left chance at epoch 9-12 of 30, about 2.3 min each. GSF uses AdamW, which left
# the plateau at epoch 4 where SGD took 9 (width 0.25, 64 px). AdaFuse-TSM starts from the finished TSM at 112 px
# with the zoo's policy settings (keep bias 2, efficiency weight 2).
#
# Every stage keeps its state in WORK (--resume, written after each epoch): run the script again and it goes on from
# the last finished epoch; finished stages and models (in weights/full_width) are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/tmp/edgefuse-synth}
WORK=${WORK:-/tmp/edgefuse-full-width}
THREADS=${THREADS:-1}
MODELS=${MODELS:-tsm adafuse gsf}
ZOO=$PWD/weights/full_width
mkdir -p "$ZOO" "$WORK"
[ -f "$DATA/train.txt" ] || edgefuse synth -o "$DATA" --formats frames
common=(--data "$DATA" --width 1.0 --segments 8 --batch-size 16 --seed 0 --threads "$THREADS" --workers 1)
export EDGEFUSE_ZOO_DIR=$ZOO  # where --zoo-name adds the finished models
done_() { [ -f "$ZOO/$1.pth" ]; }
# stage NAME MODEL ARGS...: edgefuse train into $WORK/NAME.pth unless it is there
stage() { local name=$1 model=$2; shift 2
  [ -f "$WORK/$name.pth" ] || edgefuse train "$model" "${common[@]}" "$@" --resume "$WORK/$name.state" -o "$WORK/$name.pth"; }
for m in $MODELS; do
  case $m in
    tsm) done_ synth_tsm_r18w1 || {
           stage tsm64 tsm_resnet18 --size 64 --epochs 30 --lr 0.01
           stage tsm tsm_resnet18 --size 112 --init "$WORK/tsm64.pth" --epochs 2 --lr 0.002 --half \
             --zoo-name synth_tsm_r18w1 --zoo-tag synth_w1; } ;;
    adafuse) done_ synth_adafuse_tsm_r18w1 || { [ -f "$WORK/tsm.pth" ] || { echo "AdaFuse-TSM waits for the TSM"; continue; }
           stage adafuse_tsm adafuse_tsm_resnet18 --size 112 --init "$WORK/tsm.pth" --keep-bias 2 --efficiency-weight 2 \
             --epochs 3 --lr 0.005 --half --zoo-name synth_adafuse_tsm_r18w1 --zoo-tag synth_w1; } ;;
    gsf) done_ synth_gsf_r18w1 || {
           stage gsf64 gsf_resnet18 --size 64 --epochs 16 --optimizer adamw --lr 0.001 --weight-decay 0.05
           stage gsf gsf_resnet18 --size 112 --init "$WORK/gsf64.pth" --epochs 2 --optimizer adamw --lr 0.0002 \
             --weight-decay 0.05 --half --zoo-name synth_gsf_r18w1 --zoo-tag synth_w1; } ;;
    *) echo "unknown model $m: use tsm, adafuse, gsf" >&2; exit 2 ;;
  esac
done
edgefuse models 'synth_*_r18w1'
