"""Running one shard of a sweep under the engines users already have, and meeting at the end under torchrun.

- `--shard I/N` or a Slurm job array: this process measures its shard into OUT/shards/I-of-N and stops there;
  `convbench merge OUT` (a later step, or a dependent job) joins the shards.
- torchrun (`torchrun --nproc-per-node 8 -m convbench profile ...`): each rank is a small supervisor. It forks a
  worker that measures the rank's shard (on cuda:LOCAL_RANK on a GPU node; its output goes to the shard's
  log.txt), waits for it, and records in the shard's end.json how it ended, so that a worker that dies costs
  its own rows only. The ranks then meet (torch.distributed with gloo, which works on the CPU too), rank 0 merges
  every shard into OUT and prints the sweep's table. OUT must be a folder every node sees."""
from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from convbench import children
from convbench.errors import UserError
from convbench.run.shard import Shard, shard_folder

# Ranks that finish early wait at the end for the slowest; a sweep may take a day.
MEETING_TIMEOUT = _dt.timedelta(days=7)


def local_device(device: str, env: dict[str, str] | None = None) -> str:
    """cuda -> cuda:LOCAL_RANK under torchrun, after checking that the node has a GPU for every local process: a
    rank drives the GPU of its place on its own node, not of its global rank (on two nodes of eight GPUs, rank 9
    drives GPU 1 of the second node)."""
    env = os.environ if env is None else env
    if not device.startswith("cuda"):
        return device
    import torch
    local = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", local + 1))
    gpus = torch.cuda.device_count()
    if local_world > gpus:
        raise UserError(f"torchrun started {local_world} processes on this node, but torch sees {gpus} "
                        f"GPU{'s' if gpus != 1 else ''}: one process per GPU (--nproc-per-node {gpus})")
    return f"cuda:{local}"


def default_out(command: str, env: dict[str, str] | None = None) -> Path:
    """The folder every rank agrees on without talking: named after torchrun's run id."""
    env = os.environ if env is None else env
    run_id = env.get("TORCHELASTIC_RUN_ID") or env.get("MASTER_PORT") or "run"
    return Path("runs") / command / f"torchrun-{run_id}"


def _describe_exit(code: int | None) -> dict[str, Any]:
    if code is None:
        return {"ok": False, "how": "the worker did not end"}
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return {"ok": False, "how": f"its worker was killed by {name}"}
    if code == 130:
        return {"ok": False, "how": "interrupted"}
    if code in (0, 1):  # 1: it finished, some rows failed (each says why)
        return {"ok": True, "how": "finished", "exit": code}
    return {"ok": False, "how": f"its worker exited with code {code} (its log.txt says why)"}


def _worker(work: Callable[[Path, str], int], folder: Path, device: str) -> None:
    children.die_with_parent()
    log = open(folder / "log.txt", "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout, sys.stderr = log, log
    os.environ["CONVBENCH_SHARD_WORKER"] = "1"
    try:
        code = work(folder, device)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # the end.json says how; the traceback goes to log.txt
        import traceback
        traceback.print_exc()
        code = 130 if isinstance(exc, KeyboardInterrupt) else 3
    log.flush()
    os._exit(code)


def torchrun_supervise(shard: Shard, out: Path, device: str, work: Callable[[Path, str], int],
                       merge_and_print: Callable[[Path], int]) -> int:
    """This rank's part of a torchrun sweep; returns the exit code (rank 0: the merged sweep's)."""
    import torch.distributed as dist
    folder = shard_folder(out, shard)
    folder.mkdir(parents=True, exist_ok=True)
    # Fork before torch.distributed starts its threads; the worker measures, this process only waits and meets.
    worker = multiprocessing.get_context("fork").Process(target=_worker, args=(work, folder, device))
    worker.start()
    dist.init_process_group("gloo", timeout=MEETING_TIMEOUT)
    try:
        worker.join()
        (folder / "end.json").write_text(json.dumps(_describe_exit(worker.exitcode)))
        dist.barrier()  # every shard has ended and said how
        code = 0
        if dist.get_rank() == 0:
            code = merge_and_print(out)
        dist.barrier()
        return code
    finally:
        dist.destroy_process_group()


def worker_process() -> bool:
    return os.environ.get("CONVBENCH_SHARD_WORKER") == "1"
