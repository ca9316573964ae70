"""`train --nproc-per-node N`: the run again on N processes through torch.distributed.run, with
DistributedDataParallel (gloo on the CPU, NCCL on CUDA). Rank 0 reports its summary back; the launch becomes a row
like any other, failed or not (convbench.run.rows)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from convbench import children
from convbench.results.schema import STEP_COLUMNS, STEPS_CSV
from convbench.results.writers import RowWriter
from convbench.run import rows, settings
from convbench.run.config import TrainConfig, from_payload, to_payload
from convbench.run.data import load_data
from convbench.run.engines import local_device
from convbench.run.rows import Row
from convbench.run.training import TrainingRun, sides_for, train_side


def launch(config: TrainConfig, side: TrainingRun, one_process: dict[str, Any]) -> Row:
    """Run `side` on config.nproc_per_node processes; its row, with the scaling efficiency against the one-process
    run `one_process`, or an error row that says why the launch failed."""
    n = config.nproc_per_node
    base = {"run": side.run, "model": side.model, "nproc": n}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rank0.json"
        request = {"config": to_payload(config), "side": side.run, "report": str(report)}
        cores = os.cpu_count() or 1
        env = children.env({"OMP_NUM_THREADS": str(max(1, cores // n))})
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
               "-m", "convbench.run.ddp", json.dumps(request)]
        # One rank that dies leaves the others waiting in a collective forever: the timeout ends the launch, and
        # its own process group lets it take every rank down with it.
        proc = children.popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr_text = proc.communicate(timeout=config.timeout)
        except BaseException as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            return rows.failure(base, config, f"DDP launch timed out after {config.timeout:.0f} s and was killed",
                                config.compile)
        if proc.returncode != 0 or not report.exists():
            tail = [line for line in stderr_text.strip().splitlines() if line.strip()][-1:] or ["no output"]
            return rows.failure(base, config, f"DDP launch failed: {tail[0][:300]}", config.compile)
        summary = json.loads(report.read_text())
    efficiency = summary["aggregate_images_per_s"] / (n * one_process["images_per_s"])
    summary["scaling_efficiency"] = efficiency
    if efficiency > 1:  # n processes cannot do more than n times the work of one: one of the two runs was disturbed
        load = ", ".join(f"{what} {r['host_busy']:.0%}" for what, r in (("one process", one_process), (f"{n} processes", summary))
                         if r.get("host_busy") is not None)
        summary["note"] = "; ".join(filter(None, [summary.get("note"), (
            f"scaling efficiency {efficiency:.2f} is impossible (above 1): the one-process run was slowed"
            + (f" (host busy: {load})" if load else "") + "; run both on a quiet machine")]))
    return Row({**summary, "status": rows.OK})  # finished by rank 0, with its own context


def rank_main(request: dict[str, Any]) -> None:
    """One rank: train the side with DDP; rank 0 streams the steps to the run's train_steps.csv and writes its
    summary where the launcher reads it."""
    import torch.distributed as dist

    children.die_with_parent()  # torchrun, killed with the run that launched it, takes its ranks with it
    raw = from_payload(TrainConfig, request["config"], trusted=True)
    device = torch.device(local_device(raw.device))
    config = from_payload(TrainConfig, {**request["config"], "out": None, "nproc_per_node": 1, "device": str(device)},
                          trusted=True)
    side = next(s for s in sides_for(config) if s.run == request["side"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    writer = RowWriter(raw.out / STEPS_CSV, STEP_COLUMNS, append=True) if raw.out is not None and rank == 0 else None
    try:
        data = load_data(config.data, side.input_shape, config.seed)
        with settings.applied(config):
            summary = train_side(side, config, data, writer.write if writer else (lambda row: None), rank, world, device)
            if rank == 0:
                Path(request["report"]).write_text(json.dumps(rows.finished(summary, config, config.compile)))
    finally:
        if writer:
            writer.close()
        dist.destroy_process_group()


if __name__ == "__main__":
    rank_main(json.loads(sys.argv[1]))
