"""How sensitive `convbench gate` is on this machine, with a team's model and real code changes: how often unchanged
code passes, and how often a real slowdown is caught, idle and with a competing process keeping one core busy.

    python benchmarks/gate_sensitivity.py --runs 10 --change none          # unchanged code: the false-failure trials
    python benchmarks/gate_sensitivity.py --runs 10 --change extra-block   # one more pass of the block in forward
    python benchmarks/gate_sensitivity.py --runs 10 --change wider --load  # a wider layer, one core kept busy
    python benchmarks/gate_sensitivity.py --runs 10 --prove 1.25           # convbench's own suite, --prove-factor
    python benchmarks/gate_sensitivity.py --runs 10 --change extra-op --measure instructions --input-shape 3,64,64

With --change, each run builds nothing new: one scratch git repository holds a small inverted-residual network
(teamnet, 3x96x96 by default, batch 1) committed as the base, and the working tree carries the change; each run is
one `convbench gate --arch teamnet.models:build [--measure instructions]` there. Beside timed runs, the change's true
factor is measured with torch.utils.benchmark (one thread, base and changed model interleaved), so the table says
what the gate was asked to see; counted runs say the exact ratio themselves. With --prove, each run is `convbench gate --base HEAD --prove CASE --prove-factor F` of convbench's own suite.
Every run's gate.csv is kept under --out; the last line is the table row docs/ci.md quotes."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = '''
import torch
from torch import nn

WIDTH = 32
BLOCKS = 5
EXTRA = 0        # more passes of the middle block
EXPAND = 4
SCALE = False    # one cheap element-wise op more after the stem and after every block


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int = EXPAND):
        super().__init__()
        h = c * expand
        self.body = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True),
                                  nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                  nn.ReLU6(inplace=True), nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class Net(nn.Module):
    def __init__(self, width: int = WIDTH, extra: int = EXTRA):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(*[InvertedResidual(width) for _ in range(BLOCKS)])
        self.extra = extra
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            if SCALE:
                x = x * 1.0
            x = block(x)
        for _ in range(self.extra):
            x = self.blocks[2](x)
        return self.head(x.mean((2, 3)))


def build():
    return Net()
'''

# name: (edits that make the base, edits that make the candidate from it), each edit (old text, new text)
CHANGES = {
    "none": ((), ()),
    "extra-block": ((), (("EXTRA = 0 ", "EXTRA = 1 "),)),             # one more pass of a block of five
    "wider": ((), (("EXPAND = 4", "EXPAND = 5"),)),                   # every block's expansion 4 -> 5
    "extra-op": ((), (("SCALE = False", "SCALE = True"),)),           # x * 1.0 before every block
    "block-of-twenty": ((("BLOCKS = 5", "BLOCKS = 20"),), (("BLOCKS = 20", "BLOCKS = 21"),)),
    "block-of-fifty": ((("BLOCKS = 5", "BLOCKS = 50"),), (("BLOCKS = 50", "BLOCKS = 51"),)),
    "off-width": ((), (("WIDTH = 32", "WIDTH = 33"),)),               # a channel count off the vector width
}


def _edited(text: str, edits: tuple) -> str:
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def team_repo(root: Path, change: str) -> Path:
    repo = root / "teamrepo"
    (repo / "teamnet").mkdir(parents=True)
    (repo / "teamnet" / "__init__.py").write_text("")
    base, head = CHANGES[change]
    (repo / "teamnet" / "models.py").write_text(_edited(MODELS, base))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    path = repo / "teamnet" / "models.py"
    path.write_text(_edited(path.read_text(), head))
    return repo


TRUE_FACTOR = '''
import sys, importlib.util, statistics, torch
from torch.utils.benchmark import Timer
torch.set_num_threads(1)
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    return module.build().eval()
base, head = load(sys.argv[1], "base_models"), load(sys.argv[2], "head_models")
x = torch.randn(1, *map(int, sys.argv[3].split(",")))
ratios = []
with torch.inference_mode():
    for _ in range(7):
        b = Timer("m(x)", globals={"m": base, "x": x}).blocked_autorange(min_run_time=0.3).median
        h = Timer("m(x)", globals={"m": head, "x": x}).blocked_autorange(min_run_time=0.3).median
        ratios.append(h / b)
print(statistics.median(ratios))
'''


def true_factor(repo: Path, scratch: Path, shape: str) -> float:
    """The change's slowdown by torch.utils.benchmark, one thread, base and head interleaved."""
    base = scratch / "base_models.py"
    base.write_text(subprocess.run(["git", "-C", str(repo), "show", "HEAD:teamnet/models.py"], capture_output=True,
                                   text=True, check=True).stdout)
    done = subprocess.run([sys.executable, "-c", TRUE_FACTOR, str(base), str(repo / "teamnet" / "models.py"), shape],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def one_run(index: int, args: argparse.Namespace, repo: Path | None) -> dict:
    out = Path(args.out).resolve() / f"run-{index:02d}"
    if repo is not None:
        command = ["gate", "--arch", "teamnet.models:build", "--input-shape", args.input_shape, "--batch-size", "1",
                   "--measure", args.measure]
        cwd = repo
    else:
        command = ["gate", "--base", "HEAD", "--prove", args.case, "--prove-factor", str(args.prove)]
        cwd = Path.cwd()
    done = subprocess.run([sys.executable, "-m", "convbench", *command, "--out", str(out), *args.gate_args],
                          capture_output=True, text=True, timeout=3600, cwd=cwd)
    lines = done.stdout.splitlines()
    verdict = next((line for line in reversed(lines) if line.startswith(("gate: PASS", "gate: FAIL", "gate: UNRESOLVED"))),
                   done.stderr.strip()[-200:])
    proof = next((line for line in lines if line.startswith(("proof: a deliberate", "proof FAILED"))), "")
    seconds = sum(float(m) for m in re.findall(r"(?:paired rounds|on both sides) in (\d+) s", done.stdout))
    ratio = re.search(r"(?:largest ratio|worst) (\d+\.\d+)x", verdict) or re.search(r"ratio (\d+\.\d+)x", done.stdout)
    counts = re.search(r"instructions per call ([\d,]+) -> ([\d,]+)", done.stdout)
    return {"run": index, "exit": done.returncode, "verdict": verdict, "proof": proof, "gate_seconds": seconds,
            "ratio": float(ratio.group(1)) if ratio else None, "counts": counts.groups() if counts else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--change", choices=sorted(CHANGES), help="a real change to a team's model in a scratch repo")
    parser.add_argument("--prove", type=float, help="convbench's own suite with --prove-factor F instead")
    parser.add_argument("--case", default="test_model[resnet18")
    parser.add_argument("--measure", default="time", choices=("time", "instructions"))
    parser.add_argument("--input-shape", default="3,96,96", help="the team model's input, C,H,W")
    parser.add_argument("--load", action="store_true", help="keep one core busy with a spinning process meanwhile")
    parser.add_argument("--out", default="runs/gate-sensitivity")
    parser.add_argument("gate_args", nargs="*", help="more options for convbench gate, after --")
    args = parser.parse_args()
    if (args.change is None) == (args.prove is None):
        parser.error("give one of --change or --prove")
    with tempfile.TemporaryDirectory() as tmp:
        repo = team_repo(Path(tmp), args.change) if args.change else None
        timed = repo is not None and args.change != "none" and args.measure == "time"
        factor = true_factor(repo, Path(tmp), args.input_shape) if timed else 1.0
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
        try:
            results = []
            for i in range(1, args.runs + 1):
                results.append(one_run(i, args, repo))
                print(json.dumps(results[-1]), flush=True)
        finally:
            if spinner:
                spinner.kill()
    exits = [r["exit"] for r in results]
    ratios = [r["ratio"] for r in results if r["ratio"] is not None]
    state = "one core kept busy" if args.load else "idle"
    if args.change and args.measure == "instructions":
        what = f"--measure instructions --change {args.change}"
    elif args.change:
        what = f"--change {args.change} (true factor {factor:.3f}x)"
    else:
        what = f"--prove-factor {args.prove:g}"
    digits = 4 if args.measure == "instructions" else 2
    spread = f"{min(ratios):.{digits}f}-{max(ratios):.{digits}f}x" if ratios else "-"
    print(f"{state} | {what} | passed {exits.count(0)} | regressed {exits.count(1)} | unresolved {exits.count(4)} | "
          f"proof missed {exits.count(3)} | other {len(exits) - sum(exits.count(c) for c in (0, 1, 3, 4))} | "
          f"of {len(exits)} | ratios read {spread} | gate s per run "
          f"{min(r['gate_seconds'] for r in results):.0f}-{max(r['gate_seconds'] for r in results):.0f}")


if __name__ == "__main__":
    main()
