"""How sensitive `convbench gate` is on this machine: how often unchanged code fails (false failures) and how often a
deliberate slowdown of one case is caught, idle and with a competing process keeping one core busy.

    python benchmarks/gate_sensitivity.py --runs 10 --factor 1.25            # idle
    python benchmarks/gate_sensitivity.py --runs 10 --factor 1.5 --load      # one core kept busy meanwhile

Each run is one `convbench gate --prove CASE --prove-factor F` of the working tree against itself (`--base HEAD`
with no change: unchanged code on both sides): the gate's own verdict is the false-failure trial, its proof the
catch trial. Every run's gate.csv is kept under --out; the table at the end is what docs/ci.md quotes."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def one_run(index: int, args: argparse.Namespace) -> dict:
    out = Path(args.out) / f"run-{index:02d}"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "convbench", "gate", "--base", "HEAD", "--prove", args.case,
                           "--prove-factor", str(args.factor), "--out", str(out), *args.gate_args],
                          capture_output=True, text=True, timeout=3600)
    lines = done.stdout.splitlines()
    verdict = next((line for line in lines if line.startswith(("gate: PASS", "gate: FAIL"))), "")
    proof = next((line for line in lines if line.startswith(("proof: a deliberate", "proof FAILED"))), "")
    # Exit 0: the gate passed unchanged code and caught the slowdown; 1: it failed unchanged code; 3: it missed it.
    return {"run": index, "exit": done.returncode, "false_failure": done.returncode == 1,
            "caught": proof.startswith("proof: a deliberate"), "verdict": verdict, "proof": proof,
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--factor", type=float, default=1.25)
    parser.add_argument("--case", default="test_model[resnet18")
    parser.add_argument("--load", action="store_true", help="keep one core busy with a spinning process meanwhile")
    parser.add_argument("--out", default="runs/gate-sensitivity")
    parser.add_argument("gate_args", nargs="*", help="more options for convbench gate, after --")
    args = parser.parse_args()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        results = []
        for i in range(1, args.runs + 1):
            results.append(one_run(i, args))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if spinner:
            spinner.kill()
    false_failures = sum(r["false_failure"] for r in results)
    caught = sum(r["caught"] for r in results)
    print(f"{'loaded' if args.load else 'idle'}: unchanged code passed {len(results) - false_failures} of {len(results)}; "
          f"a {args.factor:g}x slowdown of {args.case} was caught {caught} of {len(results)}")


if __name__ == "__main__":
    main()
