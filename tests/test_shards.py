"""Issue 20: sweeps split into shards with the real engines (torchrun with gloo, a one-node Slurm), merged into one
folder that equals the one-process sweep row for row; merge's refusals; bad --shard input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import run
from convbench.run import shard as shards
from convbench.errors import UserError
from convbench.analysis.merge import merge

ROOT = Path(__file__).resolve().parent.parent
COUNTS = ["model", "batch_size", "params", "macs", "acts", "saved_bytes", "saved_act_bytes", "status"]
STATIC = ["profile", "--arch", "resnet18,resnet34,resnet50_v1,googlenet,alexnet", "--device", "cpu", "--metrics", "static"]


def _env(extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "SLURM_", "MASTER_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(extra_path or ""), env.get("PYTHONPATH")]))
    return env


def _torchrun(args: list[str], cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                           "convbench", *args], cwd=cwd, env=_env(extra_path), capture_output=True, text=True, timeout=600)


def _one_process(args: list[str], out: Path) -> pd.DataFrame:
    from cli_helpers import run_quietly
    assert run_quietly(*args, "--out", str(out)) == 0
    return pd.read_csv(out / "profile.csv")


# Bad input: one line, exit 2.

@pytest.mark.parametrize("value, said", [("3/2", "--shard 3/2: the shard is counted from 1 to 2"),
                                         ("0/0", "--shard 0/0: a sweep has at least one shard"),
                                         ("x", "--shard takes I/N, shard I of N counted from 1")])
def test_bad_shards_are_one_line(capsys, tmp_path, value, said):
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--shard", value, "--out", str(tmp_path))
    assert code == 2 and out == "" and err.strip().startswith(f"error: {said}")


TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_a_shard_that_disagrees_with_torchrun_is_refused():
    with pytest.raises(UserError, match="--shard 1/2 disagrees with torchrun, which makes this process shard 2/2"):
        shards.resolve("1/2", TORCHRUN)
    assert shards.resolve("2/2", TORCHRUN) == shards.Shard(2, 2, "torchrun")


def test_a_stray_rank_and_world_size_without_torchrun_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(tmp_path / "o"))
    assert code == 2 and err == ("error: RANK=0 WORLD_SIZE=2 are set but MASTER_ADDR and MASTER_PORT are not: torchrun "
                                 "sets them all; run under torchrun, or unset RANK and WORLD_SIZE to run on your own\n")


def test_slurm_arrays_need_not_start_at_zero():
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert shards.from_environment(env) == shards.Shard(3, 3, "slurm")
    assert shards.from_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None  # a world of one is no split


def test_more_ranks_than_gpus_names_both(monkeypatch):
    import torch
    from convbench.run.engines import local_device
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="torchrun started 8 processes on this node, but torch sees 2 GPUs"):
        local_device("cuda", {"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"})
    assert local_device("cuda", {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == "cuda:1"


def test_the_deal_is_balanced_deterministic_and_covers_every_unit_once(zoo_counts):
    names = sorted(zoo_counts)
    cost = {n: zoo_counts[n]["macs"] for n in names}
    parts = shards.deal(names, cost.get, 4)
    assert parts == shards.deal(names, cost.get, 4)
    assert sorted(i for p in parts for i in p) == list(range(len(names)))
    loads = [sum(cost[names[i]] for i in p) for p in parts]
    assert max(loads) / min(loads) < 1.15
    assert all(p == sorted(p) for p in parts)  # each shard keeps the sweep's order


def test_a_sharded_sweep_without_out_says_where_shards_go(capsys):
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--shard", "1/2")
    assert code == 2 and "a sweep split into shards needs --out DIR: shard 1/2 writes DIR/shards/1-of-2" in err


# torchrun with gloo, on this machine's CPU.

def test_torchrun_static_sweep_equals_the_one_process_sweep_row_for_row(tmp_path):
    done = _torchrun([*STATIC, "--out", str(tmp_path / "zoo")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    merged = pd.read_csv(tmp_path / "zoo" / "profile.csv")
    single = _one_process(STATIC, tmp_path / "one")
    assert merged[COUNTS].equals(single[COUNTS])
    env = json.loads((tmp_path / "zoo" / "env.json").read_text())
    assert [s["shard"]["index"] for s in env["shards"]] == [1, 2] and env["sweep"]["merged_from"] == 2
    assert {json.loads((tmp_path / "zoo" / "shards" / f"{i}-of-2" / "end.json").read_text())["how"] for i in (1, 2)} == {"finished"}
    assert "resnet50_v1" in done.stdout and "rows: 5 ok" in done.stdout
    from convbench.analysis.report import make_report
    tables = dict(make_report(tmp_path / "zoo").tables)
    assert len(tables["profile"]) == 5 and set(tables["profile"]["folder"]) == {"."}  # the shards are not counted twice


@pytest.fixture()
def tiny_nets(tmp_path):
    (tmp_path / "tinynets.py").write_text(textwrap.dedent('''
        import os, signal
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self, width, die=False):
                super().__init__()
                self.conv = nn.Conv2d(3, width, 3)
                self.fc = nn.Linear(width, 10)
                self.die = die
            def forward(self, x):
                if self.die and x.device.type != "meta" and x.shape[0] == 2 and not torch.jit.is_tracing():
                    os.kill(os.getpid(), signal.SIGKILL)
                return self.fc(self.conv(x).mean((2, 3)))

        def small(): return Net(4)
        def wide(): return Net(64)
        def dies(): return Net(32, die=True)
    '''))
    return tmp_path


def test_torchrun_timed_sweep_of_two_tiny_models(tmp_path, tiny_nets):
    args = ["profile", "--arch", "tinynets:small,tinynets:wide", "--batch-size", "1,2", "--iters", "3", "--warmup", "1",
            "--input-size", "16", "--out", str(tmp_path / "t")]
    done = _torchrun(args, tmp_path, tiny_nets)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "t" / "profile.csv")
    assert list(zip(rows.model, rows.batch_size)) == [("tinynets:small", 1), ("tinynets:small", 2), ("tinynets:wide", 1),
                                                      ("tinynets:wide", 2)]
    # two sweeps measured side by side: a row finished while the other shard was still starting counts one
    assert (rows.latency_ms_p50 > 0).all() and 2 in set(rows.shards_on_host) <= {1, 2}
    samples = pd.read_parquet(tmp_path / "t" / "samples.parquet") if (tmp_path / "t" / "samples.parquet").exists() \
        else pd.read_csv(tmp_path / "t" / "samples.csv")
    assert sorted(samples.row_id.unique()) == [0, 1, 2, 3] and (samples.groupby("row_id").size() == 3).all()


def test_a_rank_that_dies_leaves_error_rows_and_the_others_intact(tmp_path, tiny_nets):
    args = ["profile", "--arch", "tinynets:small,tinynets:dies", "--batch-size", "1,2", "--iters", "2", "--warmup", "0",
            "--input-size", "16", "--no-isolate", "--out", str(tmp_path / "d")]
    done = _torchrun(args, tmp_path, tiny_nets)
    assert done.returncode == 1, done.stderr[-2000:]  # rows failed: a script must not read success
    rows = pd.read_csv(tmp_path / "d" / "profile.csv")
    got = {(m, b): (s, e) for m, b, s, e in zip(rows.model, rows.batch_size, rows.status, rows.error)}
    assert got[("tinynets:small", 1)][0] == got[("tinynets:small", 2)][0] == "ok"
    assert got[("tinynets:dies", 1)][0] == "ok"
    owner = next(i for i in (1, 2) if "tinynets:dies" in json.loads(
        (tmp_path / "d" / "shards" / f"{i}-of-2" / "env.json").read_text())["sweep"]["units_here"])
    assert got[("tinynets:dies", 2)] == ("error", f"not run: shard {owner} of 2 ended early: its worker was killed by SIGKILL")


# merge refuses, in one line, with nothing written.

@pytest.fixture()
def two_shards(tmp_path):
    from convbench.run.config import ProfileConfig
    from convbench.run.profile import run_profile
    for i in (1, 2):
        run_profile(ProfileConfig(arch="alexnet,resnet18,googlenet", metrics="static", shard=(i, 2, "--shard"),
                                  out=tmp_path / "s" / "shards" / f"{i}-of-2"))
    return tmp_path / "s"


def test_merge_refuses_missing_duplicated_and_foreign_shards(two_shards, tmp_path, capsys):
    lone = tmp_path / "lone"
    shutil.copytree(two_shards / "shards" / "1-of-2", lone / "1-of-2")
    cases = {"missing": ([str(lone)], "shard 2 of 2 is missing; found 1"),
             "twice": ([str(two_shards), str(lone)], "shard 1 of 2 is given twice"),
             "empty": ([str(tmp_path / "nothing")], "hold no shard of a sweep")}
    (tmp_path / "nothing").mkdir()
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "convbench", "profile", "--arch", "alexnet,resnet18,googlenet", "--metrics", "static",
                    "--batch-size", "2", "--shard", "2/2", "--out", str(other)], env=_env(), check=True, capture_output=True)
    cases["foreign"] = ([str(lone), str(other)], "are shards of different sweeps (fingerprints")
    for name, (folders, said) in cases.items():
        target = tmp_path / f"merged-{name}"
        code, out, err = run(capsys, "merge", *folders, "--out", str(target))
        assert code == 2 and len(err.strip().splitlines()) == 1 and said in err, (name, err)
        assert not target.exists() or not any(target.iterdir()), name


def test_merge_of_a_shard_that_stopped_short_needs_partial(two_shards, capsys):
    shard_dir = two_shards / "shards" / "2-of-2"
    rows = pd.read_csv(shard_dir / "profile.csv")
    rows.iloc[:-1].to_csv(shard_dir / "profile.csv", index=False)
    lost = rows.iloc[-1].model
    code, out, err = run(capsys, "merge", str(two_shards))
    assert code == 2 and f"model {lost} has no row for batch_size 1, mode eager in shard 2 of 2" in err
    code, out, err = run(capsys, "merge", str(two_shards), "--partial")
    assert code == 1
    merged = pd.read_csv(two_shards / "profile.csv")
    assert list(merged.model) == ["alexnet", "resnet18", "googlenet"]
    assert merged.set_index("model").loc[lost, "error"] == "not run: shard 2 of 2 ended early: it stopped before them"


# Slurm job arrays: a one-node cluster on this machine (benchmarks/slurm-local.sh start).

def _slurm_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    try:
        return subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no Slurm cluster here: bash benchmarks/slurm-local.sh start (as root)")
def test_a_slurm_job_array_merges_to_the_one_process_sweep(tmp_path):
    env = _env()
    done = subprocess.run(["sbatch", "--array=0-1", "--wait", "--chdir", str(tmp_path), "--output", str(tmp_path / "task-%a.out"),
                           str(ROOT / "examples" / "slurm-array.sbatch"), str(tmp_path / "zoo"), *STATIC[1:]],
                          env={**env, "CONVBENCH": f"{sys.executable} -m convbench"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + "".join(p.read_text() for p in tmp_path.glob("task-*.out"))
    merged = merge([tmp_path / "zoo"], tmp_path / "zoo", overwrite=True)
    assert [s.sweep["shard"]["source"] for s in merged.shards] == ["slurm"] * 2
    single = _one_process(STATIC, tmp_path / "one")
    assert merged.frame[COUNTS].reset_index(drop=True).equals(single[COUNTS])


def test_selfcheck_ranks_names_two_ranks_that_share_a_gpu():
    from convbench.selfcheck.battery import shared_devices
    entries = [("node1", 0, "GPU-aaa"), ("node1", 1, "GPU-bbb"), ("node2", 2, "GPU-aaa"), ("node1", 3, "GPU-aaa")]
    assert shared_devices(entries) == ["ranks 0 and 3 on node1 share GPU-aaa"]
    assert shared_devices([("n", 0, None), ("n", 1, None)]) == []  # CPU ranks share the CPU by design


def test_selfcheck_under_torchrun_runs_per_rank(tmp_path):
    done = _torchrun(["selfcheck", "--device", "cpu", "--check", "ranks", "--out", str(tmp_path / "sc")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for rank in (0, 1):
        checks = json.loads((tmp_path / "sc" / f"rank-{rank}" / "selfcheck.json").read_text())["checks"]
        assert [(c["name"], c["status"], c["note"]) for c in checks] == [("ranks", "skip", "ranks on the CPU share it by design")]


def test_diff_says_when_one_run_shared_its_host():
    from convbench.analysis.diff import side_by_side_notes
    both = pd.DataFrame({"shards_on_host_old": [1, 1], "shards_on_host_new": [2, 2], "threads_old": [2, 2],
                         "threads_new": [1, 1], "busy_old": [False, False], "busy_new": [False, False]})
    assert side_by_side_notes(both) == [
        "sweeps measuring on the host at once: 1 in OLD, 2 in NEW; read the ratios with that in mind",
        "torch threads: 2 in OLD, 1 in NEW; read the ratios with that in mind"]


def test_merge_lets_go_of_its_folder_when_it_is_done(two_shards, tmp_path, capsys):
    from convbench.results import folders
    target = tmp_path / "merged"
    code, out, err = run(capsys, "merge", str(two_shards), "--out", str(target))
    assert code == 0, err
    with folders.claim(target, overwrite=True):  # refused ("another convbench run is writing") while merge held it
        pass
