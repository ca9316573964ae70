"""`convbench train`: what a training step costs and whether a short run learns.

Per run: step-time percentiles and images/s (the first `warmup_steps` steps and all data movement excluded),
peak training memory, loss and accuracy per step, held-out accuracy at the end, wall time. With
`nproc_per_node > 1` the same run is launched through torch.distributed.run with DistributedDataParallel
(gloo on the CPU, NCCL on CUDA) after a one-process run, to report aggregate images/s and scaling efficiency.
Auxiliary heads, where a model has them on, add 0.3 x their loss, as in the GoogLeNet and Inception papers."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from convbench.config import DTYPES, autocast, from_payload, to_payload, validate_run, validate_threads
from convbench.data import Dataset, load_data
from convbench.errors import UserError, error_text, is_oom
from convbench.isolate import Child
from convbench import outdirs
from convbench.measure import rss
from convbench.outputs import ForwardOutputError, auxiliary, logits_of
from convbench.measure.timing import summarize
from convbench.registry import get_model_info, list_models
from convbench.results import CONTEXT_COLUMNS, ResultSink, RowWriter, environment, now
from convbench import peers, settings
from convbench.shard import Shard, mine, sweep_record
from convbench.ceiling import record as ceiling_record
from convbench.engines import local_device
from convbench.modes import compiled
from convbench.specs import resolve_models

if TYPE_CHECKING:
    import pandas as pd

STEP_COLUMNS = ["run", "model", "nproc", "step", "loss", "batch_acc", "step_ms", "timestamp"]
SUMMARY_COLUMNS = [
    "run", "model", "family", "data", "input_size", "batch_size", "steps", "nproc", "status", "error", "lr", "seed",
    "step_ms_p50", "step_ms_p90", "images_per_s", "aggregate_images_per_s", "scaling_efficiency", "train_flops_per_image",
    "mfu",
    "peak_mem_train_bytes", "first_loss", "final_loss", "final_train_acc", "heldout_acc_start", "heldout_acc", "wall_s",
    *CONTEXT_COLUMNS,
]

# --compare: the two sides of a block comparison trained inside the same host network.
COMPARE_PAIRS: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    "googlenet": (("googlenet 5x5", "googlenet", {}), ("googlenet 3x3+3x3", "googlenet", {"branch5x5": "3x3x2"})),
    "inception_v3": (("inception_v3 7x7", "inception_v3_7x7", {}), ("inception_v3 1x7+7x1", "inception_v3_noaux", {})),
}


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "resnet18"
    steps: int = 50
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True       # these three are applied by the process that trains (convbench.settings)
    tf32: bool | None = None
    threads: int | None = None
    lr: float = 0.02
    data: str = "synthetic"
    seed: int = 0
    out: Path | None = None
    overwrite: bool = False
    nproc_per_node: int = 1
    compare: str | None = None
    input_size: int | None = None
    log_every: int = 10
    warmup_steps: int = 3
    isolate: bool | None = None        # None: on for CUDA when more than one network trains, else off
    timeout: float = 1800.0            # seconds a child may stay silent (no step) before it is killed
    shard: tuple | None = None         # (index from 1, count, source): only this shard's networks (convbench.shard)

    def __post_init__(self) -> None:
        validate_run(self.device, (self.batch_size,), self.dtype, ("csv",))
        if self.steps < 1:
            raise UserError(f"--steps must be at least 1, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.nproc_per_node < 1:
            raise UserError("--nproc-per-node must be at least 1")
        if self.device.startswith("cuda") and self.nproc_per_node > torch.cuda.device_count():
            raise UserError(f"--nproc-per-node {self.nproc_per_node} asks for one GPU per process, but torch sees "
                            f"{torch.cuda.device_count()} GPU{'s' if torch.cuda.device_count() != 1 else ''} here")
        if self.compare is not None and self.compare not in COMPARE_PAIRS:
            raise UserError(f"unknown --compare {self.compare!r}; choose one of {', '.join(COMPARE_PAIRS)}")
        if self.log_every < 1 or self.warmup_steps < 0:
            raise UserError("--log-every must be at least 1")
        if not self.timeout > 0:
            raise UserError("--timeout must be positive")
        if self.input_size is not None and self.input_size < 1:
            raise UserError("--input-size must be positive")
        validate_threads(self.threads)
        if self.shard and self.nproc_per_node > 1:
            raise UserError("--nproc-per-node launches DDP itself; it cannot run inside a sharded sweep")

    @property
    def isolated(self) -> bool:
        if self.isolate is not None:
            return self.isolate
        return self.device.startswith("cuda") and len(sides_for(self)) > 1


@dataclass(frozen=True)
class Side:
    """One network to train: a label for the report and a builder taking the number of classes."""
    run: str
    model: str
    family: str
    input_size: int
    build: Callable[[int], nn.Module]


def sides_for(config: TrainConfig) -> list[Side]:
    if config.compare:
        out = []
        for label, name, overrides in COMPARE_PAIRS[config.compare]:
            info = get_model_info(name)
            out.append(Side(label, name, info.family, config.input_size or info.input_size,
                            lambda n, info=info, overrides=overrides: info.build(num_classes=n, **overrides)))
        return out
    out = []
    zoo = set(list_models())
    for spec in resolve_models(config.arch, config.input_size):
        if spec.name in zoo:
            info = get_model_info(spec.name)
            out.append(Side(spec.name, spec.name, spec.family, spec.input_size, lambda n, info=info: info.build(num_classes=n)))
        else:  # a user's module:function decides its own classes
            out.append(Side(spec.name, spec.name, spec.family, spec.input_size, lambda n, spec=spec: spec.build("cpu")))
    return out


def _loss(out: Any, y: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits_of(out)
    if logits.dim() != 2:
        raise ForwardOutputError(f"the forward's logits have shape {tuple(logits.shape)}; training needs (batch, classes)")
    if logits.shape[1] < classes:
        raise ForwardOutputError(f"the forward gives {logits.shape[1]} logits per image, but the data has {classes} classes")
    loss = F.cross_entropy(logits.float(), y) + 0.3 * sum(F.cross_entropy(a.float(), y) for a in auxiliary(out))
    return loss, logits


class NonFiniteLoss(Exception):
    pass


def _heldout_accuracy(model: nn.Module, data: Dataset, device: torch.device, channels_last: bool, autocast) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(data.test_y), 256):
            x = data.test_x[i:i + 256].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                out = model(x)
            logits = logits_of(out)
            correct += int((logits.argmax(1).cpu() == data.test_y[i:i + 256]).sum())
    model.train()
    return correct / len(data.test_y)


def train_side(side: Side, config: TrainConfig, data: Dataset, on_step: Callable[[dict[str, Any]], None],
               rank: int = 0, world: int = 1, device: torch.device | None = None) -> dict[str, Any]:
    """Train one network for config.steps steps; per-step rows go to on_step; returns the summary row, with the
    context of the process that trained."""
    device = device or torch.device(config.device)
    dtype = DTYPES[config.dtype]
    torch.manual_seed(config.seed)
    model = side.build(data.num_classes).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = compiled(net) if config.compile else net
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=5e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def autocast_ctx():
        return autocast(device.type, dtype)

    heldout_start = _heldout_accuracy(model, data, device, config.channels_last, autocast_ctx) if rank == 0 else float("nan")
    measure_cpu = device.type == "cpu" and rss.available()

    def reset_peak() -> int:
        # After the warm-up steps, so that cuDNN's autotuning workspaces and compilation stay out of the peak.
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            return torch.cuda.memory_allocated(device)
        return rss.reset_high_water_mark() if measure_cpu else 0

    mem_base = reset_peak()
    start = time.perf_counter()
    times, losses, accs = [], [], []
    for step, (x, y) in enumerate(data.batches(config.batch_size, config.steps, config.seed, rank, world), start=1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_ctx():
            loss, logits = _loss(step_model(x), y, data.num_classes)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = (time.perf_counter() - t0) * 1e3
        value = float(loss.detach())
        acc = float((logits.detach().argmax(1) == y).float().mean())
        row = {"run": side.run, "model": side.model, "nproc": world, "step": step, "loss": value, "batch_acc": acc,
               "step_ms": dt, "timestamp": now()}
        on_step(row)
        if not math.isfinite(value):
            raise NonFiniteLoss(f"{side.run}: loss became {value} at step {step}")
        if step > config.warmup_steps:
            times.append(dt)
        elif step == config.warmup_steps and step < config.steps:
            mem_base = reset_peak()
        losses.append(value)
        accs.append(acc)
    wall = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - mem_base
    else:
        peak = rss.peak_since_reset(mem_base) if measure_cpu else float("nan")
    stats = summarize(times or [float("nan")])
    k = min(config.log_every, len(losses))
    images_per_s = config.batch_size / stats["latency_ms_p50"] * 1e3
    flops = training_flops(side, data.num_classes)
    return {
        "run": side.run, "model": side.model, "family": side.family, "data": data.name, "input_size": side.input_size,
        "batch_size": config.batch_size, "steps": config.steps, "nproc": world, "lr": config.lr, "seed": config.seed,
        "step_ms_p50": stats["latency_ms_p50"], "step_ms_p90": stats["latency_ms_p90"],
        "images_per_s": images_per_s, "train_flops_per_image": flops, **model_flops_utilisation(flops, images_per_s, config),
        "aggregate_images_per_s": world * config.batch_size / stats["latency_ms_p50"] * 1e3,
        "peak_mem_train_bytes": peak, "first_loss": losses[0], "final_loss": sum(losses[-k:]) / k,
        "final_train_acc": sum(accs[-k:]) / k,
        "heldout_acc_start": heldout_start,
        "heldout_acc": _heldout_accuracy(model, data, device, config.channels_last, autocast_ctx) if rank == 0 else float("nan"),
        "wall_s": wall, **_context(config),
    }


def training_flops(side: Side, classes: int) -> int | None:
    """FLOPs of one image's forward and backward (2 per MAC), counted exactly on the meta device, auxiliary heads
    included where the network runs them in training."""
    from convbench.measure.complexity import training_macs
    from convbench.measure.meta import build_on_meta
    try:
        with build_on_meta():
            model = side.build(classes)
        return 2 * training_macs(model.to("meta"), (2, 3, side.input_size, side.input_size))
    except Exception:  # a network the meta device cannot run: no figure, rather than a wrong one
        return None


def model_flops_utilisation(flops: int | None, images_per_s: float, config: TrainConfig) -> dict[str, Any]:
    """MFU: achieved training FLOP/s over this machine's measured peak for the dtype (convbench.ceiling)."""
    from convbench.ceiling import cached
    peak = cached(config.device)
    tflops = peak.tflops(config.dtype) if peak else None
    if not flops or not tflops or not math.isfinite(images_per_s):
        return {}
    return {"mfu": flops * images_per_s / (tflops * 1e12)}


def _context(config: TrainConfig) -> dict[str, Any]:
    return settings.live_context(config.device, config.dtype, config.channels_last, config.compile)


@dataclass
class TrainRun:
    summaries: list[dict[str, Any]]
    stopped: str | None = None
    interrupted: bool = False

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd
        return pd.DataFrame(self.summaries, columns=SUMMARY_COLUMNS)


def side_summary(side: Side, config: TrainConfig, step_row: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One training run as a summary row; a failure becomes the row's status, never the end of the sweep."""
    failed = {"run": side.run, "model": side.model, **_context(config)}
    try:
        data = load_data(config.data, side.input_size, config.seed)
        return {**train_side(side, config, data, step_row), "status": "ok"}
    except NonFiniteLoss as exc:
        return {**failed, "status": "diverged", "error": str(exc)}
    except UserError:
        raise
    except Exception as exc:
        return {**failed, "status": "oom" if is_oom(exc) else "error", "error": error_text(exc)}


def train_side_child(payload: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    """The child's half of --isolate: one side's steps as events, then its summary row (convbench.isolate)."""
    config = from_payload(TrainConfig, payload["config"], isolate=False, nproc_per_node=1)
    side = next(s for s in sides_for(config) if s.run == payload["run"])
    send({"stage": "training", "key": side.run})
    with settings.applied(config):
        send({"row": side_summary(side, config, lambda row: send({"event": row}))})


def _isolated_summary(side: Side, config: TrainConfig, step_row: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    child = Child("convbench.train:train_side_child", {"config": to_payload(config), "run": side.run}, config.timeout,
                  on_event=step_row)
    rows = list(child.rows())
    if rows:
        return rows[0]
    return {"run": side.run, "model": side.model, **_context(config), "status": "error", "error": child.end.describe()}


def side_cost(side: Side) -> float:
    """A network's share of a training sweep (every side runs the same steps and batch): its MACs per image."""
    from convbench.measure.complexity import count
    from convbench.measure.meta import build_on_meta
    try:
        with build_on_meta():
            model = side.build(10)
        return float(count(model, (1, 3, side.input_size, side.input_size))["macs"])
    except Exception:
        return 1.0


def run_train(config: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> TrainRun:
    sides = sides_for(config)
    out = outdirs.claim(Path(config.out), config.overwrite) if config.out is not None else None
    names = [s.run for s in sides]
    shard = Shard(*config.shard) if config.shard else None
    sides = mine(sides, side_cost, shard)
    steps_writer = RowWriter(out / "train_steps.csv", STEP_COLUMNS) if out is not None else None
    stopped = None

    def step_row(row: dict[str, Any]) -> None:
        if steps_writer:
            steps_writer.write(row)
        if on_step:
            on_step(row)

    env = {**environment(config.device), "config": {k: str(v) for k, v in asdict(config).items()},
           "sweep": sweep_record("train", config, names, [s.run for s in sides], shard)}
    env["ceiling"] = ceiling_record(config)  # the peak that MFU is a share of
    try:
        with ResultSink(out, "train", SUMMARY_COLUMNS, ("csv",), env) as sink, settings.applied(config), peers.measuring():
            for side in sides:
                measured = _isolated_summary(side, config, step_row) if config.isolated else side_summary(side, config, step_row)
                summary = dict(measured)
                if summary["status"] == "diverged":
                    stopped = summary["error"]
                if config.nproc_per_node > 1 and summary["status"] == "ok":
                    sink.add({**summary, "timestamp": now()})
                    summary = {**_launch_ddp(config, side, out), "timestamp": now()}
                    summary["scaling_efficiency"] = summary["aggregate_images_per_s"] / (config.nproc_per_node * sink.rows[-1]["images_per_s"])
                summary.setdefault("timestamp", now())
                sink.add(summary)
                if stopped:
                    break
    finally:
        if steps_writer:
            steps_writer.close()
    return TrainRun(sink.rows, stopped, sink.interrupted)


def _launch_ddp(config: TrainConfig, side: Side, out: Path | None) -> dict[str, Any]:
    """Run `side` on nproc_per_node processes through torch.distributed.run; rank 0 reports back."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rank0.json"
        request = {"config": {**asdict(config), "out": str(out) if out else None, "arch": side.model if not config.compare else config.arch},
                   "side": side.run, "report": str(report)}
        cores = os.cpu_count() or 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "OMP_NUM_THREADS": str(max(1, cores // config.nproc_per_node))}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={config.nproc_per_node}",
               "-m", "convbench.train", json.dumps(request)]
        # One rank that dies leaves the others waiting in a collective forever: the timeout ends the launch, and
        # its own session lets it take every rank down with it.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr_text = proc.communicate(timeout=config.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"run": side.run, "model": side.model, "nproc": config.nproc_per_node, "status": "error",
                    "error": f"DDP launch timed out after {config.timeout:.0f} s and was killed"}
        if proc.returncode != 0 or not report.exists():
            tail = [line for line in stderr_text.strip().splitlines() if line.strip()][-1:] or ["no output"]
            return {"run": side.run, "model": side.model, "nproc": config.nproc_per_node, "status": "error",
                    "error": f"DDP launch failed: {tail[0][:300]}"}
        return {**json.loads(report.read_text()), "status": "ok"}


def _ddp_worker(request: dict[str, Any]) -> None:
    import torch.distributed as dist

    raw = request["config"]
    device = torch.device(local_device(raw["device"]))
    cuda = device.type == "cuda"
    config = TrainConfig(**{**raw, "out": None, "nproc_per_node": 1, "device": str(device)})
    side = next(s for s in sides_for(config) if s.run == request["side"])
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(raw["out"]) if raw["out"] else None
    writer = RowWriter(out / "train_steps.csv", STEP_COLUMNS, append=True) if out is not None and rank == 0 else None
    try:
        data = load_data(config.data, side.input_size, config.seed)
        with settings.applied(config):
            summary = train_side(side, config, data, writer.write if writer else (lambda row: None), rank, world, device)
        if rank == 0:
            Path(request["report"]).write_text(json.dumps(summary))
    finally:
        if writer:
            writer.close()
        dist.destroy_process_group()


if __name__ == "__main__":
    _ddp_worker(json.loads(sys.argv[1]))
