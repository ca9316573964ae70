#!/usr/bin/env bash
# On a new GPU: the whole acceptance, in steps that each fit a borrowed machine's 10-minute call.
#
#   bash benchmarks/gpu.sh                  # every step, in order
#   bash benchmarks/gpu.sh selfcheck profile-bf16   # just these
#
# Steps (each under `timeout`, its output kept before the next starts):
#   selfcheck        convbench selfcheck --device cuda (every CUDA path: timers, memory, counts, modes, isolation, training)
#   profile-bf16     the zoo at batch 1 and 256, bf16, channels_last, eager and graphs
#   profile-fp32     the zoo at batch 1 and 256, fp32, eager and graphs
#   profile-compile  resnet50, resnet18, googlenet, inception_v3 in compile and compile+graphs, bf16 channels_last
#                    (torch.compile takes a minute or more per model and batch: the whole zoo would not fit)
#   compare          compare all at batch 1, 64 and 256, bf16, eager; then the block cases again with graphs
#   train            resnet50 bf16; --compare googlenet; --compare inception_v3; fp16 with its scaler; --compile
#   fidelity         benchmarks/fidelity.py: resnet50 bf16 channels_last at batch 256 and 1
#   suite            the CUDA latency suite once (pytest-benchmark, timings only as a smoke test)
#   report           convbench report of the folder
# Results go to results/<gpu-name>/ (DEST overrides); with $OUT set (the device tool), the folder is tarred there
# after every step, so a call cut short still returns what finished.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
GPU=$($PY -c "import torch; print(torch.cuda.get_device_name(0).lower().replace(' ', '-'))" 2>/dev/null) || {
    echo "no CUDA device: benchmarks/gpu.sh needs a GPU" >&2; exit 2; }
DEST=${DEST:-results/$GPU}
mkdir -p "$DEST/logs"
CB="$PY -m convbench"

snapshot() { if [ -n "${OUT:-}" ]; then tar -czf "$OUT/results.tgz" "$DEST"; fi; }
step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$(date +%s)
    echo "== $name (at most ${limit} s): $*"
    timeout "$limit" "$@" > "$DEST/logs/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$DEST/logs/steps.txt"
    tail -n 5 "$DEST/logs/$name.log"
    snapshot
}

run_selfcheck()  { step selfcheck 240 $CB selfcheck --device cuda --out "$DEST/selfcheck"; }
run_profile_bf16() { step profile-bf16 540 $CB profile --arch all --device cuda --batch-size 1,256 --dtype bf16 --channels-last \
                       --mode eager,graphs --out "$DEST/profile-bf16"; }
run_profile_fp32() { step profile-fp32 540 $CB profile --arch all --device cuda --batch-size 1,256 --mode eager,graphs \
                       --out "$DEST/profile-fp32"; }
run_profile_compile() { step profile-compile 540 $CB profile --arch resnet50,resnet18,googlenet,inception_v3 --device cuda \
                          --batch-size 1,256 --dtype bf16 --channels-last --mode eager,graphs,compile,compile+graphs \
                          --out "$DEST/profile-compile"; }
run_compare() {
    step compare 420 $CB compare all --device cuda --batch-size 1,64,256 --dtype bf16 --out "$DEST/compare"
    for name in factorization asymmetric reduction grouped; do
        step "compare-graphs-$name" 120 $CB compare "$name" --device cuda --batch-size 1,64 --dtype bf16 --cuda-graphs \
             --out "$DEST/compare-graphs/$name"
    done
}
run_train() {
    step train-resnet50 240 $CB train --arch resnet50 --steps 100 --batch-size 64 --device cuda --dtype bf16 --channels-last \
         --out "$DEST/train"
    step train-googlenet 240 $CB train --compare googlenet --steps 100 --batch-size 64 --device cuda --dtype bf16 \
         --channels-last --out "$DEST/train-compare-googlenet"
    step train-inception 300 $CB train --compare inception_v3 --steps 100 --batch-size 64 --device cuda --dtype bf16 \
         --channels-last --out "$DEST/train-compare-inception_v3"
    step train-fp16 120 $CB train --arch resnet18 --steps 60 --batch-size 64 --device cuda --dtype fp16 --out "$DEST/train-fp16"
    step train-compile 300 $CB train --arch resnet18 --steps 60 --batch-size 64 --device cuda --compile --out "$DEST/train-compile"
}
run_fidelity() { step fidelity 240 $PY benchmarks/fidelity.py --device cuda --model resnet50 --batch-size 256,1 --dtype bf16 \
                   --channels-last; }
run_suite() { step suite 300 $PY -m pytest -q suites/test_latency.py -k cuda --benchmark-disable; }
run_report() { step report 180 $CB report "$DEST"; }

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(selfcheck profile-bf16 profile-fp32 profile-compile compare train fidelity suite report)
for s in "${steps[@]}"; do
    case "$s" in
        selfcheck) run_selfcheck ;; profile-bf16) run_profile_bf16 ;; profile-fp32) run_profile_fp32 ;;
        profile-compile) run_profile_compile ;; compare) run_compare ;; train) run_train ;; fidelity) run_fidelity ;;
        suite) run_suite ;; report) run_report ;;
        *) echo "unknown step $s" >&2; exit 2 ;;
    esac
done
