#!/usr/bin/env bash
# Every GPU check in one script, for a lent GPU machine (README, "GPU"): the environment, pytest -m gpu,
# CUDA training against the CPU, export of every model kind (FP32/FP16 ONNX, TensorRT engines where tensorrt
# is installed) with parity, GPU backends against ONNX Runtime CPU, `linewatch bench backends`, and a short
# end-to-end run of the runtime on the GPU backend against a local mosquitto.
#
# The device image has torch but neither paho-mqtt, orjson, hdrhistogram nor mosquitto: they travel in .gpu/
# (wheels/, debs/). onnxruntime-gpu (200 MB) travels in parts (ort.NN, sha256 in ort.sha256): parts stashed
# by earlier calls (`bash benchmarks/gpu_check.sh stash DIR`) lie in /root/ortparts.
# Results: benchmarks/results/$DEVICE/, copied to $OUT. Usage: bash benchmarks/gpu_check.sh [STAGE ...], stages
# pytest, bench (dense, batch 1..256), bench-kinds (BENCH_KINDS, default conv lstm: batch 1, 16, 256), training, e2e
# (default: all; exporting the bundles and their GPU parity always run).
set -u
DEVICE=${DEVICE:-nvidia-h200}
OUT=${OUT:-/tmp/gpu-out}
RESULTS=benchmarks/results/$DEVICE
WORK=/root/lw
PARTS=/root/ortparts
if [ "${1:-}" = stash ]; then mkdir -p $PARTS && cp "$2"/ort.* $PARTS/ && ls -la $PARTS; exit; fi
STAGES=${*:-pytest bench bench-kinds training e2e}
want() { [[ " $STAGES " == *" $1 "* ]]; }
mkdir -p "$OUT" "$RESULTS" "$WORK"
export PYTHONUNBUFFERED=1
log() { echo "== $(date +%T) $*"; }
lw() { python3 -m linewatch "$@"; }

log install
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl
for f in .gpu/debs/*.deb; do dpkg -x "$f" /tmp/mosq; done
mkdir -p /tmp/mosq/bin
printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/mosq/usr/lib/x86_64-linux-gnu:/tmp/mosq/lib/x86_64-linux-gnu exec /tmp/mosq/usr/sbin/mosquitto "$@"\n' >/tmp/mosq/bin/mosquitto
chmod +x /tmp/mosq/bin/mosquitto
export PATH=/tmp/mosq/bin:$PATH
SITE=/tmp/site
cp .gpu/ort.* $PARTS/ 2>/dev/null
if (cd $PARTS && cat ort.[0-9]* | sha256sum | grep -q "$(cut -d' ' -f1 ort.sha256)"); then
  mkdir -p /tmp/ortgpu && cat $PARTS/ort.[0-9]* | xz -d | tar x -C /tmp/ortgpu && SITE=/tmp/ortgpu:/tmp/site
else
  echo "onnxruntime-gpu parts incomplete: $(ls $PARTS 2>&1 | tr '\n' ' '); ONNX Runtime CUDA is not checked"
fi
export PYTHONPATH=$SITE:$PWD

log facts
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
  python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -1
  echo "trtexec: $(command -v trtexec || echo 'not installed')"
  echo "mosquitto: $(mosquitto -h | head -1)"
} 2>&1 | tee "$OUT/facts.txt"
TRT=""
python3 -c "import tensorrt" 2>/dev/null && TRT="--tensorrt"

log "train every kind on CUDA, export (pytest -m gpu alongside)"
want pytest && python3 -m pytest -m gpu tests/export/test_gpu.py -q -p no:cacheprovider >"$OUT/pytest_gpu.txt" 2>&1 &
lw simulate -o $WORK/plant.csv --machines 3 --rows 4000
for kind in dense vae conv lstm pca; do
  FP16=--fp16; [ $kind = lstm ] && FP16=""  # ONNX Runtime's CPU kernels crash on the LSTM's FP16 graph (parity refuses it)
  (lw train $WORK/plant.csv --series-column machine --model $kind -o $WORK/run-$kind --device cuda --quiet \
   && lw export $WORK/run-$kind -o $WORK/bundle-$kind $FP16 $TRT) >$WORK/$kind.log 2>&1 &
done
wait
want pytest && tail -n 3 "$OUT/pytest_gpu.txt"
for kind in dense vae conv lstm pca; do echo "-- $kind"; grep -E "threshold|parity|rror|cap" $WORK/$kind.log | head -8; done | tee "$OUT/export.txt"

log "GPU backends against ONNX Runtime CPU"
python3 -m benchmarks.gpu_parity $WORK/plant.csv $(ls -d $WORK/bundle-*/bundle.json | xargs -n1 dirname) --results "$DEVICE" 2>&1 \
  | grep -E "^\| [a-z]|Error"

log "bench backends"
want bench && lw bench backends $WORK/bundle-dense -o "$RESULTS" --seconds 0.3 2>/dev/null | tail -n 40
want bench-kinds && for kind in ${BENCH_KINDS:-conv lstm}; do
  lw bench backends $WORK/bundle-$kind -o "$RESULTS/backends-$kind" --batches 1,16,256 --seconds 0.2 --warmup 20 2>/dev/null | grep -E "^\| [a-z]"
done

log "CUDA training time per epoch against the CPU"
want training && python3 -m benchmarks.gpu_training --epochs 3 --results "$DEVICE" | tail -n 12

log "end to end: the runtime on the GPU backend, mosquitto on loopback"
BACKEND=onnxruntime-cuda
python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" || BACKEND=onnxruntime
[ -n "$TRT" ] && BACKEND=tensorrt
want e2e && python3 -m benchmarks.soak $WORK/bundle-dense --minutes 1 --restart-every 30 --backend $BACKEND --results "$DEVICE" | tail -n 6

log done
tar czf "$OUT/results.tgz" "$RESULTS"
tar czf "$OUT/logs.tgz" $WORK/*.log $WORK/*/export.log 2>/dev/null
ls "$OUT"
