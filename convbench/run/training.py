"""The training loop behind `convbench train`: one network, a few steps, what a step costs and whether it learns.

Per run: step-time percentiles and images/s (the first `warmup_steps` steps and all data movement excluded),
peak training memory, loss and accuracy per step, held-out accuracy at the end, wall time. Auxiliary heads, where
a model has them on, add 0.3 x their loss, as in the GoogLeNet and Inception papers (--aux-weight W another weight,
0 the network without them); --label-smoothing EPS smooths every target (Inception-v3 section 7)."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from convbench.errors import Diverged, UserError
from convbench.measure import ceiling, clock, host_load
from convbench.measure.complexity import training_macs
from convbench.measure.device import DTYPES, PeakMemory, autocast
from convbench.zoo.meta import build_on_meta
from convbench.measure.host_load import BUSY_SHARE
from convbench.measure.roofline import above_peak, model_flops_utilisation
from convbench.measure.timing import summarize
from convbench.measure.host import now
from convbench.run import rows
from convbench.run.config import AUX_WEIGHT, TrainConfig
from convbench.run.data import Dataset, load_data
from convbench.run.modes import compiled
from convbench.zoo.comparisons import TRAIN_PAIRS
from convbench.zoo.outputs import ForwardOutputError, auxiliary, logits_of, pick_output
from convbench.zoo.registry import get_model_info, list_models
from convbench.zoo.specs import input_shape, resolve_models


@dataclass(frozen=True)
class TrainingRun:
    """One network to train: a label for the report and a builder taking the number of classes."""
    run: str
    model: str
    family: str
    input_shape: tuple[int, int, int]
    build: Callable[[int], nn.Module]

    @property
    def input_size(self) -> int:
        return self.input_shape[1]


def has_aux_heads(info: Any, overrides: dict[str, Any] | None = None) -> bool:
    """Whether a zoo entry builds its auxiliary classifiers (they run in training only)."""
    parameter = inspect.signature(info.builder).parameters.get("aux_logits")
    if parameter is None:
        return False
    return bool({"aux_logits": parameter.default, **info.defaults, **(overrides or {})}["aux_logits"])


def _aux_options(config: TrainConfig, info: Any, overrides: dict[str, Any], label: str) -> dict[str, Any]:
    """--aux-weight 0 builds the network without its auxiliary heads (out of the loss and the step); a weight for a
    network that has none is refused."""
    if config.aux_weight is None or (config.compare and config.aux_weight == 0 and not has_aux_heads(info, overrides)):
        return {}
    if not has_aux_heads(info, overrides):
        raise UserError(f"--aux-weight: {label} has no auxiliary heads (inception_v3 has; googlenet is registered with "
                        "them off)")
    return {"aux_logits": False} if config.aux_weight == 0 else {}


def sides_for(config: TrainConfig, refused: list[str] | None = None) -> list[TrainingRun]:
    if config.compare:
        out = []
        for label, name, overrides in TRAIN_PAIRS[config.compare]:
            info = get_model_info(name)
            options = {**overrides, **_aux_options(config, info, overrides, label)}
            out.append(TrainingRun(label, name, info.family, input_shape(config.input_size, info.input_size),
                            lambda n, info=info, options=options: _picked(info.build(num_classes=n, **options), config)))
        return out
    out = []
    zoo = set(list_models())
    for spec in resolve_models(config.arch, config.input_size, config.output, refused=refused):
        if spec.version is not None:  # timm's and torchvision's constructors take the classes
            out.append(TrainingRun(spec.name, spec.name, spec.family, spec.input_shape,
                                   lambda n, spec=spec: _picked(spec.builder(num_classes=n), config)))
        elif spec.name in zoo:
            info = get_model_info(spec.name)
            options = _aux_options(config, info, {}, spec.name)
            out.append(TrainingRun(spec.name, spec.name, spec.family, spec.input_shape,
                            lambda n, info=info, options=options: _picked(info.build(num_classes=n, **options), config)))
        else:  # a user's module:function decides its own classes
            out.append(TrainingRun(spec.name, spec.name, spec.family, spec.input_shape, lambda n, spec=spec: spec.build("cpu")))
    return out


def _picked(module: nn.Module, config: TrainConfig) -> nn.Module:
    return pick_output(module, config.output) if config.output is not None else module


def _loss(out: Any, y: torch.Tensor, classes: int, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the logits, with label smoothing (--label-smoothing), plus the auxiliary heads' own, each
    weighted by --aux-weight (the papers' 0.3 by default)."""
    logits = logits_of(out)
    if logits.dim() != 2:
        raise ForwardOutputError(f"the forward's logits have shape {tuple(logits.shape)}; training needs (batch, classes)")
    if logits.shape[1] < classes:
        raise ForwardOutputError(f"the forward gives {logits.shape[1]} logits per image, but the data has {classes} classes")
    eps, heads = config.label_smoothing, auxiliary(out)
    if config.aux_weight and not heads:  # a user's network: known only once it has run (zoo entries are checked first)
        raise UserError("--aux-weight: the network's forward returns no auxiliary heads in training")
    loss = F.cross_entropy(logits.float(), y, label_smoothing=eps)
    loss = loss + aux_weight(config) * sum(F.cross_entropy(a.float(), y, label_smoothing=eps) for a in heads)
    return loss, logits


def aux_weight(config: TrainConfig) -> float:
    return AUX_WEIGHT if config.aux_weight is None else config.aux_weight


def _heldout_accuracy(model: nn.Module, data: Dataset, device: torch.device, channels_last: bool, autocast_ctx) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(data.test_y), 256):
            x = data.test_x[i:i + 256].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_ctx():
                out = model(x)
            logits = logits_of(out)
            correct += int((logits.argmax(1).cpu() == data.test_y[i:i + 256]).sum())
    model.train()
    return correct / len(data.test_y)


def train_side(side: TrainingRun, config: TrainConfig, data: Dataset, on_step: Callable[[dict[str, Any]], None],
               rank: int = 0, world: int = 1, device: torch.device | None = None) -> dict[str, Any]:
    """Train one network for config.steps steps; per-step rows go to on_step; returns the summary's measured
    columns (its context is added when the row is finished)."""
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
    memory = PeakMemory(device)
    # Reset again after the warm-up steps, so that cuDNN's autotuning workspaces and compilation stay out of the peak.
    memory.reset()
    start, load = clock.now(), host_load.snapshot()
    times, losses, accs = [], [], []
    for step, (x, y) in enumerate(data.batches(config.batch_size, config.steps, config.seed, rank, world), start=1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        clock.synchronize(device)  # the batch's copy to the device stays out of the step

        def train_step():
            opt.zero_grad(set_to_none=True)
            with autocast_ctx():
                loss, logits = _loss(step_model(x), y, data.num_classes, config)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            return loss, logits
        dt, (loss, logits) = clock.call_ms(train_step, device)
        value = float(loss.detach())
        acc = float((logits.detach().argmax(1) == y).float().mean())
        on_step({"run": side.run, "model": side.model, "nproc": world, "step": step, "loss": value, "batch_acc": acc,
                 "step_ms": dt, "timestamp": now()})
        if not math.isfinite(value):
            raise Diverged(f"{side.run}: loss became {value} at step {step}")
        if step > config.warmup_steps:
            times.append(dt)
        elif step == config.warmup_steps and step < config.steps:
            memory.reset()
        losses.append(value)
        accs.append(acc)
    wall = clock.now() - start
    busy = _most_busy(host_load.window_columns(load), world)
    peak = memory.peak()
    stats = summarize(times or [float("nan")])
    k = min(config.log_every, len(losses))
    images_per_s = config.batch_size / stats["latency_ms_p50"] * 1e3
    flops = training_flops(side, data.num_classes)
    ceiling_now = ceiling.cached(config.device)
    mfu = model_flops_utilisation(flops, images_per_s, config.dtype, ceiling_now)
    return {
        "run": side.run, "model": side.model, "family": side.family, "data": data.name, "input_size": side.input_size,
        "batch_size": config.batch_size, "steps": config.steps, "nproc": world, "lr": config.lr, "seed": config.seed,
        "label_smoothing": config.label_smoothing, "aux_weight": aux_weight(config) if side_has_aux(side) else (0.0 if config.aux_weight == 0 else None),
        "step_ms_p50": stats["latency_ms_p50"], "step_ms_p90": stats["latency_ms_p90"], "images_per_s": images_per_s,
        "train_flops_per_image": flops, **mfu, "note": above_peak(mfu.get("mfu"), "MFU", ceiling_now), **busy,
        "aggregate_images_per_s": world * config.batch_size / stats["latency_ms_p50"] * 1e3,
        "peak_mem_train_bytes": peak, "first_loss": losses[0], "final_loss": sum(losses[-k:]) / k,
        "final_train_acc": sum(accs[-k:]) / k,
        "heldout_acc_start": heldout_start,
        "heldout_acc": _heldout_accuracy(model, data, device, config.channels_last, autocast_ctx) if rank == 0 else float("nan"),
        "wall_s": wall,
    }


def _most_busy(load: dict[str, Any], world: int) -> dict[str, Any]:
    """This rank's load, or under DDP the most any rank saw: one busy rank slows every step of all of them."""
    if world == 1:
        return load
    import torch.distributed as dist
    share = torch.tensor([load.get("host_busy", -1.0)], dtype=torch.float64)
    dist.all_reduce(share, op=dist.ReduceOp.MAX)
    return {} if share.item() < 0 else {"host_busy": share.item(), "busy": share.item() > BUSY_SHARE}


def meta_build(side: TrainingRun, classes: int) -> nn.Module:
    with build_on_meta():
        return side.build(classes).to("meta")


def training_flops(side: TrainingRun, classes: int) -> int | None:
    """FLOPs of one image's forward and backward (2 per MAC), counted exactly on the meta device, auxiliary heads
    included where the network runs them in training."""
    try:
        return 2 * training_macs(meta_build(side, classes), (2, *side.input_shape))
    except Exception:  # a network the meta device cannot run: no figure, rather than a wrong one
        return None


def side_has_aux(side: TrainingRun) -> bool:
    """Whether the network, as this run builds it, runs auxiliary heads in training (counted on the meta device)."""
    try:
        model = meta_build(side, 10).train()
        return bool(auxiliary(model(torch.zeros((2, *side.input_shape), device="meta"))))
    except Exception:  # a forward the meta device cannot run: its heads are not known, and not claimed
        return False


def train_row(side: TrainingRun, config: TrainConfig, on_step: Callable[[dict[str, Any]], None]) -> rows.Row:
    """One training run's row; a failure (a loss that became NaN: diverged) becomes its status, never the end of a
    sweep."""
    row = rows.Builder({"run": side.run, "model": side.model, "nproc": 1}, essential=("training",))
    row.attempt("training", lambda: train_side(side, config, load_data(config.data, side.input_shape, config.seed), on_step))
    return row.finish(config, config.compile)
