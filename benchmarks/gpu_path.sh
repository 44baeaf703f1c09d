#!/usr/bin/env bash
# The whole GPU path, for a machine with an NVIDIA GPU (or a Jetson) and TensorRT: export, calibrate, build
# FP32 / FP16 / INT8 engines with the Python bindings and with trtexec, time them both ways, validate agreement.
# It has NOT run in edgefuse's development or CI: no GPU and no TensorRT exist there. Run it where they do and
# keep its output (benchmarks/results/gpu_path-<device>.txt) beside the command.
#
#   bash benchmarks/gpu_path.sh [WORK_DIR] [DEVICE]        # DEVICE: auto (default), jetson, or a profile name
#
# Needs: edgefuse installed (JetPack 6+ or a desktop), TensorRT's Python bindings and cuda-python (or pycuda) for
# the Python rows, trtexec on the PATH (or /usr/src/tensorrt/bin) for the trtexec rows.
set -euo pipefail
work=${1:-gpu-path}
device=${2:-auto}
mkdir -p "$work"
cd "$work"

[ -f synth/val.txt ] || edgefuse synth --out synth --train 0
models=(synth_tsm_r18w025 synth_adafuse_tsm_r18w025)
for m in "${models[@]}"; do
    edgefuse export "$m" -o "$m.onnx"
    edgefuse calibrate "$m.onnx" --clips synth/calib.txt --holdout synth/val.txt -o "$m.int8.onnx" --trt-cache "$m.cache"
    edgefuse calibrate "$m.onnx" --clips synth/calib.txt --holdout synth/val.txt --precision fp16 -o "$m.fp16.onnx"
done
# ResNet-50 at 8x224 (random weights: latency only; agreement needs a trained checkpoint)
edgefuse export tsm_resnet50 --num-classes 174 -o tsm_r50.onnx
edgefuse calibrate tsm_r50.onnx --clips synth/calib.txt --num-clips 32 -o tsm_r50.int8.onnx

for g in *.onnx; do
    stem=${g%.onnx}
    edgefuse build-engine "$g" --device "$device" --backend tensorrt -o "$stem.plan"
    edgefuse build-engine "$g" --device "$device" --backend trtexec -o "$stem.trtexec.plan"
done
edgefuse build-engine synth_tsm_r18w025.onnx --device "$device" --precision fp16 -o synth_tsm_r18w025.flag-fp16.plan

for m in "${models[@]}" tsm_r50; do
    edgefuse bench "$m".*plan --device "$device" --timer python --json-out "bench-$m-python.json"
    edgefuse bench "$m".*plan --device "$device" --timer trtexec --json-out "bench-$m-trtexec.json"
done
for m in "${models[@]}"; do
    for p in "$m".plan "$m".int8.plan "$m".fp16.plan; do
        edgefuse validate "$p" --reference "$m.onnx" --clips synth/val.txt --num-clips 250 \
            --report "validate-${p%.plan}.json" || true   # a verdict over the budget is a finding, not a stop
    done
done
echo "gpu_path: done in $work"
