"""One signal story for every command: Ctrl-C, SIGTERM and SIGHUP end any command with 128 + the signal's number
and one line saying what was kept and where; a second signal during the clean-up changes nothing; a signal while
convbench starts is one line too."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import run
from convbench.cli import gate_cmd
from convbench.errors import Terminated
from convbench.selfcheck import battery


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen:
    env = {**os.environ, "CONVBENCH_CACHE_DIR": str(tmp_path / "cache"), "CONVBENCH_PEERS_DIR": str(tmp_path / "peers"),
           "COLUMNS": "120"}
    # SIGINT at its default in the child, as in a terminal (a background job of a script has it ignored)
    return subprocess.Popen([sys.executable, "-m", "convbench", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_lines(path: Path, lines: int, proc: subprocess.Popen, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never reached {lines} lines (exit {proc.poll()})")


def test_a_signal_while_convbench_starts_is_one_line(tmp_path):
    proc = _start(tmp_path, "list")
    time.sleep(0.3)  # importing torch and the commands takes seconds
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "interrupted while starting: nothing was run\n"


def test_compare_on_sigterm_keeps_its_finished_rows_and_a_second_signal_changes_nothing(tmp_path):
    out = tmp_path / "c"
    proc = _start(tmp_path, "compare", "factorization", "--shape", "8,8,8", "--batch-size", "1,2,4,8,16,32", "--pairs",
                  "6", "--out", str(out))
    _wait_for_lines(out / "compare.csv", 3, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    kept = len(pd.read_csv(out / "compare.csv"))
    assert proc.returncode == 143, err
    assert err == f"interrupted: the {kept} finished rows are in {out}/compare.csv\n"
    assert kept >= 2 and (out / "compare.md").read_text().count("\n| ") == kept  # every writer finished


def test_train_on_sighup_says_its_steps_and_runs(tmp_path):
    out = tmp_path / "t"
    proc = _start(tmp_path, "train", "--arch", "resnet18", "--steps", "500", "--batch-size", "2", "--input-size", "32",
                  "--out", str(out))
    _wait_for_lines(out / "train_steps.csv", 3, proc)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    steps = len(pd.read_csv(out / "train_steps.csv"))
    assert proc.returncode == 129, err
    assert err == (f"interrupted: the {steps} finished steps are in {out}/train_steps.csv, "
                   f"the 0 finished runs in {out}/train.csv\n")


def _signal_self(number: int):
    def check(ctx):
        os.kill(os.getpid(), number)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal was not heard")
    return check


def test_selfcheck_interrupted_keeps_its_finished_checks(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(battery.CHECKS, "timer_truth", lambda ctx: battery.Check("timer_truth", "pass", "1.000"))
    monkeypatch.setitem(battery.CHECKS, "nothing_held", _signal_self(signal.SIGHUP))
    code, _, err = run(capsys, "selfcheck", "--check", "timer_truth,nothing_held,counts_agree", "--out", str(tmp_path / "s"))
    assert code == 129 and err == f"interrupted: the 1 finished check is in {tmp_path}/s/selfcheck.json\n"
    saved = json.loads((tmp_path / "s" / "selfcheck.json").read_text())["checks"]
    assert [c["name"] for c in saved] == ["timer_truth"]


def test_a_command_without_rows_of_its_own_says_it_was_interrupted(capsys, tmp_path, monkeypatch):
    # Typer turns an interrupt into a silent exit 130, whatever the signal: convbench says it, with its own code.
    def interrupted_gate(config, say, progress):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("the signal was not heard")
    monkeypatch.setattr(gate_cmd, "run_gate", interrupted_gate)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run(capsys, "gate", "--arch", "resnet18", "--out", str(tmp_path / "g"))
    assert code == 143
    assert err == "interrupted: convbench gate stopped before it finished; no file it writes is left half-written\n"
    assert signal.getsignal(signal.SIGTERM) == before  # in-process, the caller's handler is back


def test_terminated_is_an_interrupt_with_its_number():
    exc = Terminated(signal.SIGTERM)
    assert isinstance(exc, KeyboardInterrupt) and exc.signal_number == 15
