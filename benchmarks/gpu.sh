#!/usr/bin/env bash
# On a GPU machine you have for a short while: one plan per call, each within 9 minutes of wall time, wheels included.
#
#   bash benchmarks/gpu.sh                 # the first call, `accept`: every CUDA code path once
#   bash benchmarks/gpu.sh zoo-bf16-1      # the second plan, one call each, once `accept` has passed
#   bash benchmarks/gpu.sh --dry-run all   # every step of every plan on the CPU, tiny sizes (CI runs this)
#   bash benchmarks/gpu.sh --list          # the plans and their steps
#
# A GPU image may lack fvcore and its pure-Python dependencies: their wheels can travel with the tree in .whl/
# (git-ignored; made once with `pip wheel --no-deps -w .whl fvcore iopath yacs termcolor portalocker tabulate tqdm`)
# and are installed here into a temporary folder on PYTHONPATH. The plan itself is benchmarks/gpu_plan.py.
set -uo pipefail
export CONVBENCH_PLAN_STARTED=${CONVBENCH_PLAN_STARTED:-$(date +%s.%N)}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEPS=${CONVBENCH_DEPS:-/tmp/convbench-deps}
if ! $PY -c "import fvcore" 2>/dev/null; then
    if compgen -G ".whl/*.whl" > /dev/null; then
        $PY -m pip install --quiet --no-index --no-deps --target "$DEPS" .whl/*.whl || {
            echo "gpu.sh: installing the wheels in .whl/ failed" >&2; exit 2; }
        export PYTHONPATH="$DEPS${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "gpu.sh: fvcore is missing and .whl/ holds no wheels: the fvcore cross-checks will be left out" >&2
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec $PY benchmarks/gpu_plan.py "$@"
