"""Where runs go: a folder per run, created by that run alone; `latest` a link replaced atomically; an --out that
holds a run refused unless --overwrite; a folder another live run writes to refused either way."""
from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from cli_helpers import run
from convbench.results import folders as outdirs


def test_default_runs_get_a_folder_each_and_latest_points_at_the_newest(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("reduction", "grouped"):
        code, out, err = run(capsys, "compare", name, "--pairs", "6", "--warmup", "0", "--shape", "64,8,8")
        assert code == 0, err
    folders = sorted(p for p in (tmp_path / "runs" / "compare").iterdir() if p.name != "latest")
    assert len(folders) == 2
    assert set(pd.read_csv(folders[0] / "compare.csv")["comparison"]) == {"reduction"}
    assert set(pd.read_csv(folders[1] / "compare.csv")["comparison"]) == {"grouped"}
    assert (tmp_path / "runs" / "compare" / "latest").resolve() == folders[1].resolve()


def test_an_explicit_out_that_holds_a_run_is_refused_unless_overwrite(capsys, tmp_path):
    out = tmp_path / "o"
    argv = ["profile", "--arch", "alexnet", "--metrics", "static", "--out", str(out)]
    assert run(capsys, *argv)[0] == 0
    before = (out / "profile.csv").read_text()
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert f"{out} already holds a run (profile.csv); pass --overwrite to replace it" in err
    assert (out / "profile.csv").read_text() == before
    assert run(capsys, *argv, "--overwrite")[0] == 0


def test_a_run_folder_is_created_by_one_run_alone(tmp_path):
    now = datetime.datetime(2026, 12, 3, 13, 0, 0)
    first = outdirs.new_run_folder("profile", root=tmp_path, now=now)
    second = outdirs.new_run_folder("profile", root=tmp_path, now=now)
    assert first.is_dir() and second.is_dir() and second == first.parent / f"{first.name}-2"


def _convbench(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convbench", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_runs_started_in_one_second_keep_both_runs_rows_and_latest_stays_a_link(tmp_path):
    procs = [_convbench("profile", "--arch", name, "--metrics", "static", cwd=tmp_path) for name in ("alexnet", "vgg11")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    runs = sorted(p for p in (tmp_path / "runs" / "profile").iterdir() if p.name != "latest")
    assert len(runs) == 2
    assert sorted(pd.read_csv(r / "profile.csv")["model"][0] for r in runs) == ["alexnet", "vgg11"]
    latest = tmp_path / "runs" / "profile" / "latest"
    assert latest.is_symlink() and latest.resolve() in [r.resolve() for r in runs]


def test_a_second_writer_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path):
    out = tmp_path / "o"
    first = _convbench("profile", "--arch", "convbench.selfcheck.fixtures:tiny", "--input-size", "16", "--min-time", "3",
                       "--no-ceiling", "--out", str(out), "--overwrite", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (out / "env.json").exists() and time.monotonic() < deadline:  # the first holds the folder now
        time.sleep(0.1)
    second = _convbench("profile", "--arch", "alexnet", "--metrics", "static", "--out", str(out), "--overwrite", cwd=tmp_path)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and err.strip() == f"error: another convbench run is writing to {out}; wait for it " \
                                                     "to end, or choose another --out"
    assert first.wait(timeout=300) == 0
    assert list(pd.read_csv(out / "profile.csv")["model"]) == ["convbench.selfcheck.fixtures:tiny"]


def test_bad_input_leaves_no_empty_run_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "profile", "--arch", "alexnet", "--warmup", "-1")
    assert code == 2 and not any((tmp_path / "runs" / "profile").iterdir())


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_row(tmp_path, capsys, monkeypatch):
    (tmp_path / "stops.py").write_text("def build():\n    raise KeyboardInterrupt  # Ctrl-C while the model builds\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "o"
    code, _, _ = run(capsys, "profile", "--arch", "alexnet,resnet18", "--metrics", "static", "--out", str(out))
    before = (out / "profile.csv").read_text()
    assert code == 0 and len(before.splitlines()) == 3
    code, _, err = run(capsys, "profile", "--arch", "stops:build", "--metrics", "static", "--overwrite", "--out", str(out))
    assert code == 130
    assert err == f"interrupted before a row was finished: {out} holds the run --overwrite was to replace, as it was\n"
    assert (out / "profile.csv").read_text() == before and not (out / ".convbench-previous").exists()
    # Killed outright before its first row (the old run still aside): the next run finds it put back first.
    (out / ".convbench-previous").mkdir()
    (out / "profile.csv").rename(out / ".convbench-previous" / "profile.csv")
    (out / "profile.csv").write_text("model,batch_size,status\n")
    code, _, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--out", str(out))
    assert code == 2 and "already holds a run" in err and (out / "profile.csv").read_text() == before
    code, _, err = run(capsys, "profile", "--arch", "alexnet", "--metrics", "static", "--overwrite", "--out", str(out))
    assert code == 0 and len((out / "profile.csv").read_text().splitlines()) == 2
    assert not (out / ".convbench-previous").exists()
