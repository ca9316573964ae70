"""Under load and faults, no figure lies and nothing finished is lost: ceilings that distrust themselves and a busy
machine, every timed figure with its load, signals and killed parents, full disks, transient failures, caches and
files that are not what convbench wrote, and numbers no real run has."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cli_helpers import run
from convbench.measure import cache, ceiling
from convbench.run import peers
from convbench.run.compare import run_compare
from convbench.run.config import CompareConfig, ProfileConfig, TrainConfig
from convbench.run.profile import run_profile
from convbench.run.train import run_train
from convbench.zoo import registry

TINY = "convbench.selfcheck.fixtures:tiny"


@pytest.fixture()
def spinners(monkeypatch):
    """A host where other processes take half of every core, as a neighbour's job on a shared runner does: /proc/stat
    as host_load reads it, made up (a real neighbour's share depends on the scheduler; how it is read is held by
    test_the_share_of_others_is_read_from_the_jiffies)."""
    from convbench.measure import host_load
    ticks = {"n": 0}

    def snapshot():
        ticks["n"] += 1
        n = ticks["n"]  # one second of wall time per reading: 2 CPUs x 100 jiffies, half of them others'
        return host_load.Snapshot(wall=float(n), busy=150 * n, steal=0, own=50 * n, cpus=2)
    monkeypatch.setattr(host_load, "snapshot", snapshot)
    monkeypatch.setattr(host_load, "_jiffies_per_second", lambda: 100)


def test_the_share_of_others_is_read_from_the_jiffies():
    from convbench.measure import host_load
    start = host_load.Snapshot(wall=0.0, busy=0, steal=0, own=0, cpus=2)
    end = host_load.Snapshot(wall=1.0, busy=150, steal=10, own=60, cpus=2)  # 200 jiffies of capacity
    assert host_load.others_share(start, end) == pytest.approx((150 - 60 + 10) / 200)
    assert host_load.load_columns(start, end) == {"host_busy": pytest.approx(0.5), "busy": True}
    short = host_load.Snapshot(wall=0.1, busy=20, steal=0, own=0, cpus=2)  # 20 jiffies: too short to say
    assert host_load.others_share(start, short) is None


# Ceilings.

@pytest.mark.real_ceiling
@pytest.mark.parametrize("bad", [{"value": 0}, {"value": "fast"}, {"value": 1e-9}, {"value": 1e9}, "a list"])
def test_a_cached_ceiling_that_cannot_be_true_is_measured_again(monkeypatch, bad):
    monkeypatch.setattr(ceiling, "compute_kernels", lambda device, dtype: {"GEMM": (1e12, lambda: (lambda: None))})
    monkeypatch.setattr(ceiling, "bandwidth_kernels", lambda device: {"copy": (1e9, lambda: (lambda: None))})
    monkeypatch.setattr(ceiling.host_load, "window_columns", lambda start: {"host_busy": 0.0, "busy": False})
    timer = lambda fn, device: 1000.0  # noqa: E731  1 TFLOP/s, 1 GB/s
    first, _ = ceiling.obtain("cpu", ("fp32",), timer=timer)
    path = ceiling._cache_dir() / f"{first.key}.json"
    data = first.as_dict()
    if isinstance(bad, dict):
        data["compute"]["fp32"].update(bad)
    else:
        data = [data]
    path.write_text(json.dumps(data))
    ceiling.forget()
    notes = []
    again, fresh = ceiling.obtain("cpu", ("fp32",), timer=timer, on_note=notes.append)
    assert fresh and again.compute["fp32"].value == pytest.approx(1.0)
    assert len(notes) == 1 and "could not be used" in notes[0] and "measured again" in notes[0]


@pytest.mark.real_ceiling
def test_a_ceiling_measured_beside_a_competing_process_is_used_marked_and_not_cached(monkeypatch, spinners):
    monkeypatch.setattr(ceiling, "compute_kernels", lambda device, dtype: {"GEMM": (1e12, lambda: (lambda: None))})
    monkeypatch.setattr(ceiling, "bandwidth_kernels", lambda device: {"copy": (1e9, lambda: (lambda: None))})
    notes = []
    peak, fresh = ceiling.obtain("cpu", ("fp32",), timer=lambda fn, device: 1000.0, on_note=notes.append)
    assert fresh and peak.busy and peak.host_busy == pytest.approx(0.5)
    assert not (ceiling._cache_dir() / f"{peak.key}.json").exists()
    assert "not cached" in notes[0] and ceiling.cached("cpu") is peak  # this run uses it, marked
    assert "host busy" in peak.describe("fp32")


@pytest.mark.real_ceiling
def test_a_row_above_the_peak_says_why_and_the_screen_never_shows_it_plain(monkeypatch, capsys, tmp_path):
    low = ceiling.Peak(1e-6, "GEMM")  # 1 MFLOP/s: any real row beats it
    monkeypatch.setattr(ceiling, "measure", lambda device="cpu", dtypes=("fp32",), timer=None: ceiling.Ceiling(
        ceiling.cache_key(ceiling.machine(torch.device(device))), ceiling.machine(torch.device(device)),
        {d: low for d in dtypes}, ceiling.Peak(10.0, "copy"), measured="2026-01-01T00:00:00+00:00", host_busy=0.01))
    code, out, err = run(capsys, "profile", "--arch", TINY, "--input-size", "64", "--iters", "3", "--out", str(tmp_path / "p"))
    assert code == 0, err
    row = pd.read_csv(tmp_path / "p" / "profile.csv").iloc[0]
    assert row.pct_peak > 1 and "is above this machine's measured peak" in row.note and "ceiling --refresh" in row.note
    assert row.ceiling.startswith("1e-06 TFLOP/s fp32 (GEMM), measured 2026-01-01")
    assert "%?" in out and "? after % peak" in out


# Every timed figure knows its load.

def test_a_compare_beside_a_competing_process_flags_every_row_busy_short_blocks_included(spinners):
    found = run_compare(CompareConfig(name="reduction", pairs=6, warmup=0, shape=(8, 8, 8))).rows
    assert len(found) == 3 and all(r["busy"] is True and r["host_busy"] == pytest.approx(0.5) for r in found)


def test_train_rows_carry_their_load(user_nets):
    row = run_train(TrainConfig(arch=f"{user_nets}:plain", steps=3, batch_size=2, input_size=16)).rows[0]
    assert row["status"] == "ok" and 0 <= row["host_busy"] <= 1 and row["busy"] in (True, False)


# Signals and children.

@pytest.fixture()
def slow_nets(tmp_path):
    (tmp_path / "slownets.py").write_text(textwrap.dedent('''
        import time
        from torch import nn

        class Slow(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3)
            def forward(self, x):
                if x.device.type != "meta":
                    time.sleep(0.2)
                return self.conv(x).mean((2, 3))

        class Hangs(Slow):
            def forward(self, x):
                if x.device.type != "meta":
                    time.sleep(3600)
                return self.conv(x).mean((2, 3))

        def slow(): return Slow()
        def hangs(): return Hangs()
    '''))
    return tmp_path


def _env(extra: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(extra), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_sigterm_ends_a_run_like_ctrl_c_keeping_rows_and_every_writer(slow_nets, tmp_path):
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "convbench", "profile", "--arch", f"{TINY},slownets:hangs,alexnet",
                             "--input-size", "16", "--iters", "3", "--no-cpu-memory", "--no-ceiling", "--format", "csv,json,md",
                             "--out", str(out)], env=_env(slow_nets), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "profile.csv").exists():
        time.sleep(0.2)
    while time.monotonic() < deadline and len((out / "profile.csv").read_text().splitlines()) < 2:
        time.sleep(0.2)  # the first row is written; the next model hangs in its forward now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == f"interrupted: the 1 finished row is in {out}/profile.csv"
    assert list(pd.read_csv(out / "profile.csv")["model"]) == [TINY]
    assert [r["model"] for r in json.loads((out / "profile.json").read_text())] == [TINY]
    assert (out / "profile.md").read_text().startswith("| model |")


def _processes_marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"CONVBENCH_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_parent_leaves_no_convbench_process_behind(slow_nets, tmp_path):
    mark = f"{os.getpid()}-{time.time()}"
    proc = subprocess.Popen([sys.executable, "-m", "convbench", "profile", "--arch", "slownets:hangs", "--isolate",
                             "--input-size", "16", "--no-ceiling", "--out", str(tmp_path / "o")],
                            env={**_env(slow_nets), "CONVBENCH_TEST_MARK": mark}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_processes_marked(mark)) < 2:  # the parent and its isolated child
        time.sleep(0.2)
    assert len(_processes_marked(mark)) >= 2
    proc.kill()
    proc.wait()
    time.sleep(5)
    assert _processes_marked(mark) == []


def test_a_dead_sweep_s_mark_is_ignored_and_removed(tmp_path, monkeypatch):
    folder = Path(os.environ["CONVBENCH_PEERS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / str(dead.pid)).write_text("")
    with peers.measuring():
        assert peers.count() == 1
    assert not (folder / str(dead.pid)).exists()


# Caches that distrust themselves.

def test_a_transient_failure_is_not_cached():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("the run's memory limit")
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    registry.register_model("flaky_for_test", flaky, family="test", input_size=16)
    try:
        config = ProfileConfig(arch="flaky_for_test", metrics="static")
        first, second = run_profile(config).rows[0], run_profile(config).rows[0]
    finally:
        registry._REGISTRY.pop("flaky_for_test")
    assert first["status"] == "error" and "MemoryError" in first["error"]
    assert second["status"] == "ok" and second["params"] == 112


def test_a_count_cache_that_is_not_convbench_s_is_counted_again_with_one_line(capsys):
    path = cache._path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(["not", "counts"]))
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(path.parent / "o"))
    assert code == 0 and f"the count cache {path} could not be used (it holds a list, not counts)" in err
    path.write_text(json.dumps({"alexnet@224:counts:dispatch": {"params": "many"}}))
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(path.parent / "p"))
    assert code == 0 and "1 entries of the count cache" in err and "61.1M" in out


# Full disks.

@pytest.fixture()
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("this machine cannot mount a tmpfs")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def _fill(disk: Path, leave: int) -> None:
    """Fill `disk` but for about `leave` bytes (tmpfs hands out whole 4 KiB pages)."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_a_full_disk_during_baseline_update_leaves_the_old_baseline_whole(small_disk, capsys):
    path = small_disk / "baseline.json"
    code, out, err = run(capsys, "baseline", "--arch", "alexnet", "--file", str(path), "--update")
    assert code == 0, err
    before = path.read_text()
    _fill(small_disk, 0)
    code, out, err = run(capsys, "baseline", "--arch", "alexnet,vgg11", "--file", str(path), "--update")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is full" in err and "Traceback" not in err
    assert path.read_text() == before and list(small_disk.glob(".baseline.json.*")) == []


def test_a_full_disk_during_a_profile_keeps_every_finished_row_whole(small_disk, capsys):
    out = small_disk / "p"
    _fill(small_disk, 16 * 1024)  # env.json, the samples' header and a page of rows; the next page does not fit
    code, stdout, err = run(capsys, "profile", "--arch", "vgg*,resnet*", "--metrics", "static", "--no-ceiling",
                            "--out", str(out))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"the disk holding {out} is full" in err and "finished rows are in" in err
    rows = pd.read_csv(out / "profile.csv")
    assert len(rows) >= 1 and rows["status"].eq("ok").all() and rows["params"].notna().all()
    assert f"the {len(rows)} finished row" in err


# Bad input, one line each.

@pytest.mark.parametrize("argv, said", [
    (["profile", "--arch", TINY, "--min-time", "nan"], "--min-time must be a positive number of seconds, got nan"),
    (["profile", "--arch", TINY, "--min-time", "inf"], "--min-time must be a positive number of seconds, got inf"),
    (["profile", "--arch", TINY, "--warmup", str(10 ** 21)], "--warmup 1000000000000000000000 is beyond any real run"),
    (["profile", "--arch", TINY, "--shard", f"{10 ** 20}/{10 ** 20}"], "shards is beyond any real sweep"),
    (["profile", "--arch", ":fn"], "--arch ':fn' is not package.module:function"),
    (["profile", "--arch", "nosuchmodule_xyz:build"], "cannot import 'nosuchmodule_xyz'"),
    (["train", "--lr", "nan"], "--lr must be a positive number, got nan"),
    (["compare", "grouped", "--timeout", "inf"], "--timeout must be a positive number of seconds, got inf"),
    (["profile", "--arch", TINY, "--out", "x" * 300], "File name too long"),
    (["gate", "--fail-above", "nan%"], "--fail-above must be above 0%"),
])
def test_bad_numbers_and_names_are_one_line(capsys, tmp_path, monkeypatch, argv, said):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and said in err and "Traceback" not in err, err


@pytest.mark.parametrize("env, said", [({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 WORLD_SIZE=2 cannot be one process"),
                                       ({"RANK": "0"}, "RANK is set but WORLD_SIZE is not")])
def test_torchrun_variables_that_cannot_be_a_launch_are_one_line(capsys, tmp_path, monkeypatch, env, said):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, out, err = run(capsys, "profile", "--arch", TINY, "--metrics", "static", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and said in err


@pytest.fixture()
def folders(tmp_path):
    good = tmp_path / "good"
    run_profile(ProfileConfig(arch=TINY, input_size=16, iters=3, warmup=0, cpu_memory=False, out=good))
    return tmp_path, good


@pytest.mark.parametrize("damage, said, commands", [
    (lambda p: (p / "profile.csv").write_text("model,batch_size\nx,1\n"), "is not a convbench profile file: it has no status",
     ("diff", "report")),
    (lambda p: (p / "profile.csv").write_bytes(b"\xff\xfe garbage \x00\x01"), "is damaged: line 1 holds NUL bytes",
     ("diff", "report")),
    (lambda p: (p / "profile.csv").write_bytes(b"\xff\xfe garbage"), "is damaged: line 1 is not UTF-8 text", ("diff", "report")),
    (lambda p: (p / "profile.csv").write_text('model,batch_size,status\n"unterminated,1,ok\n'),
     "profile.csv is cut off or damaged (1 fields where the header has 3)", ("diff", "report")),
    (lambda p: (p / "samples.csv").write_text("nothing,here\n1,2\n"), "is not a convbench samples file", ("diff",)),
])
def test_results_folders_that_are_not_what_convbench_writes_are_one_line(capsys, folders, damage, said, commands):
    root, good = folders
    bad = root / "bad"
    run_profile(ProfileConfig(arch=TINY, input_size=16, iters=3, warmup=0, cpu_memory=False, out=bad))
    damage(bad)
    for argv in [{"diff": ["diff", str(good), str(bad)], "report": ["report", str(bad)]}[c] for c in commands]:
        code, out, err = run(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and said in err, (argv, err)


def test_a_samples_parquet_that_cannot_be_read_falls_back_to_the_csv_beside_it_or_is_one_line(capsys, folders):
    root, good = folders
    if not (good / "samples.csv").exists():  # where pyarrow is installed the run kept its samples as parquet only
        pd.read_parquet(good / "samples.parquet").to_csv(good / "samples.csv", index=False)
    (good / "samples.parquet").write_bytes(b"not parquet")  # damaged, or written where pyarrow was and read where not
    code, out, err = run(capsys, "diff", str(good), str(good))
    assert code == 0, err
    (good / "samples.csv").unlink()
    code, out, err = run(capsys, "diff", str(good), str(good))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read" in err and "samples.parquet" in err, err


def test_a_results_folder_with_a_non_utf8_name_is_reported(capsys, folders):
    root, good = folders
    odd = Path(os.fsdecode(bytes(root) + b"/caf\xe9"))
    good.rename(odd)
    code, out, err = run(capsys, "report", str(odd))
    assert code == 0, err
    assert (odd / "report.html").exists()


@pytest.mark.parametrize("content", ['{"models": [1, 2]}', '{"models": {"alexnet": {"params": "many"}}}', "[]", "not json"])
def test_a_baseline_file_of_the_wrong_shape_is_one_line(capsys, tmp_path, content):
    path = tmp_path / "b.json"
    path.write_text(content)
    code, out, err = run(capsys, "baseline", "--arch", "alexnet", "--file", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(path) in err, err
    code, out, err = run(capsys, "baseline", "--arch", "alexnet", "--file", str(path), "--update")
    assert code == 2 and path.read_text() == content  # not written over: a file that is not a baseline is not ours


def test_a_tampered_count_cache_entry_fails_its_checksum_and_is_counted_again(capsys, tmp_path):
    code, out, _ = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(tmp_path / "a"))
    path = cache._path()
    data = json.loads(path.read_text())
    key = next(k for k in data if k.startswith("alexnet@") and ":counts:" in k)
    assert data[key]["params"] == 61_100_840 and data[key][cache.SUM] == cache.checksum(key, data[key])
    data[key]["params"] = 999  # edited by hand: its checksum no longer holds
    path.write_text(json.dumps(data))
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(tmp_path / "b"))
    assert code == 0 and err == (f"convbench: 1 entries of the count cache {path} fail their checksum (changed since "
                                 "convbench wrote them); they are counted again\n")
    assert pd.read_csv(tmp_path / "b" / "profile.csv").params[0] == 61_100_840
    assert json.loads(path.read_text())[key]["params"] == 61_100_840
