#!/usr/bin/env bash
# The full-width models of the synthetic benchmark: ResNet-18 at width 1.0, 8 segments, 112 px, 10 classes (TSM,
# AdaFuse-TSM from the TSM, GSF), trained on CPU by `edgefuse train`, stored as float16 in weights/full_width/ (a zoo
# folder outside the installed package: its pretrained.json records each command, accuracy and sha256; load them
# with EDGEFUSE_ZOO_DIR=weights/full_width).
#
#     bash benchmarks/train_full_width.sh            # DATA=... WORK=... THREADS=... to change where and how
#
# Cost, measured on a quiet 2-core AMD EPYC (AVX2) with 2 torch threads, one training step of 16 clips: TSM 3.6 s,
# GSF 5.3 s (63 steps an epoch): TSM 8 epochs ~35 min, AdaFuse-TSM 5 epochs ~25 min, GSF 8 epochs ~50 min. Run it on
# an otherwise idle machine: sharing the cores with other work slowed a step 3x.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/tmp/edgefuse-synth}
WORK=${WORK:-/tmp/edgefuse-full-width}
THREADS=${THREADS:-2}
export EDGEFUSE_ZOO_DIR=$PWD/weights/full_width
mkdir -p "$EDGEFUSE_ZOO_DIR" "$WORK"
[ -f "$DATA/train.txt" ] || edgefuse synth -o "$DATA" --formats frames
common=(--data "$DATA" --width 1.0 --segments 8 --size 112 --batch-size 16 --seed 0 --threads "$THREADS" --workers 1
        --half)
edgefuse train tsm_resnet18 "${common[@]}" --epochs 8 --lr 0.01 -o "$WORK/tsm.pth" \
    --zoo-name synth_tsm_r18w1 --zoo-tag synth_w1
edgefuse train adafuse_tsm_resnet18 "${common[@]}" --init "$WORK/tsm.pth" --keep-bias 2 --efficiency-weight 2 \
    --epochs 5 --lr 0.005 -o "$WORK/adafuse_tsm.pth" --zoo-name synth_adafuse_tsm_r18w1 --zoo-tag synth_w1
edgefuse train gsf_resnet18 "${common[@]}" --epochs 8 --lr 0.01 -o "$WORK/gsf.pth" \
    --zoo-name synth_gsf_r18w1 --zoo-tag synth_w1
edgefuse models   # the tags now include the three models, with their accuracy
