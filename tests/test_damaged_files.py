"""Readers that refuse what is damaged: merge, diff and report name the file and the row of a cut-off, NUL-filled,
repeated or non-numeric row, a FIFO, an env.json of the wrong shape or a baseline nested without end, and exit 2
with nothing compared, plotted or merged; merge --partial leaves such a row out and says so."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import run
from convbench.run.config import ProfileConfig
from convbench.run.profile import run_profile


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "run"
    run_profile(ProfileConfig(arch="alexnet,resnet18", metrics="static", batch_sizes=(1, 2), out=out))
    return out


def _edit_rows(path: Path, change) -> None:
    frame = pd.read_csv(path)
    change(frame)
    frame.to_csv(path, index=False)


def _set(column, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[1, column] = value
    return change


DAMAGES = {
    "cut off": (lambda p: p.write_bytes(p.read_bytes()[:-7]), "row 4 of {csv} is cut off or damaged (the file ends inside it"),
    "a field lost": (lambda p: p.write_text(p.read_text().rsplit(",", 3)[0] + "\n"),
                     "row 4 of {csv} is cut off or damaged ("),
    "NUL bytes": (lambda p: p.write_bytes(p.read_bytes().replace(b"\n", b"\n\0\0\0", 3)), "{csv} is damaged: line 2 holds NUL bytes"),
    "a row twice": (lambda p: p.write_text(p.read_text() + p.read_text().splitlines()[-1] + "\n"),
                    "row 5 of {csv} repeats an earlier row (model resnet18, input_size 224, batch_size 2"),
    "text for a figure": (lambda p: _edit_rows(p, _set("macs", "many")), "row 2 of {csv} is damaged: macs holds 'many', not a number"),
    "an infinity": (lambda p: _edit_rows(p, _set("params", float("inf"))), "row 2 of {csv} is damaged: params holds inf"),
    "a negative count": (lambda p: _edit_rows(p, _set("macs", -5)), "row 2 of {csv} is damaged: macs holds -5: a negative figure"),
    "a column gone": (lambda p: pd.read_csv(p).drop(columns=["macs"]).to_csv(p, index=False),
                      "{csv} is not a convbench profile file: it has no macs column"),
    "empty": (lambda p: p.write_text(""), "{csv} is empty"),
    "a FIFO": (lambda p: (p.unlink(), os.mkfifo(p)), "cannot read {csv}: it is a FIFO, not a regular file"),
    "a list for the ceiling": (lambda p: (p.parent / "env.json").write_text(json.dumps({"ceiling": [1, 2]})),
                               "{env} is damaged: its 'ceiling' is a list, where convbench writes an object"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_diff_and_report_refuse_a_damaged_run_naming_file_and_row(good, tmp_path, capsys, damage):
    hurt = tmp_path / "hurt"
    shutil.copytree(good, hurt)
    spoil, said = DAMAGES[damage]
    spoil(hurt / "profile.csv")
    said = said.format(csv=hurt / "profile.csv", env=hurt / "env.json")
    for argv in (["diff", str(good), str(hurt), "--metric", "macs"], ["report", str(hurt), "--out", str(tmp_path / "r")]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and err.startswith(f"error: {said}") and len(err.splitlines()) == 1, (argv[0], err)
    assert not (tmp_path / "r" / "report.html").exists()


def test_diff_takes_a_ratio_of_figures_only(good, capsys):
    code, _, err = run(capsys, "diff", str(good), str(good), "--metric", "model")
    assert code == 2 and err.startswith("error: --metric 'model' is not a figure a ratio can be taken of; choose from params")


@pytest.fixture()
def shards(tmp_path) -> Path:
    for i in (1, 2):
        run_profile(ProfileConfig(arch="alexnet,resnet18,googlenet", metrics="static", shard=(i, 2, "--shard"),
                                  out=tmp_path / "s" / "shards" / f"{i}-of-2"))
    return tmp_path / "s"


def test_merge_refuses_a_cut_off_row_and_with_partial_leaves_it_out(shards, capsys):
    csv = shards / "shards" / "2-of-2" / "profile.csv"
    lost = pd.read_csv(csv).model.iloc[-1]
    csv.write_bytes(csv.read_bytes()[:-30])
    code, _, err = run(capsys, "merge", str(shards))
    assert code == 2 and err.startswith(f"error: row 1 of {csv} is cut off or damaged") and not (shards / "profile.csv").exists()
    code, out, err = run(capsys, "merge", str(shards), "--partial")
    assert code == 1 and f"left out: row 1 of {csv} is cut off or damaged" in " ".join(out.split())
    merged = pd.read_csv(shards / "profile.csv").set_index("model")
    assert merged.loc[lost, "status"] == "error" and merged.loc[lost, "error"].startswith("not run: shard 2 of 2 ended early")


def test_merge_refuses_a_row_written_twice(shards, capsys):
    csv = shards / "shards" / "1-of-2" / "profile.csv"
    csv.write_text(csv.read_text() + csv.read_text().splitlines()[-1] + "\n")
    code, _, err = run(capsys, "merge", str(shards))
    assert code == 2 and "repeats an earlier row" in err and not (shards / "profile.csv").exists()
    code, out, err = run(capsys, "merge", str(shards), "--partial")
    assert code == 0 and f"left out: row {len(pd.read_csv(csv))} of {csv} repeats an earlier row" in out
    assert len(pd.read_csv(shards / "profile.csv")) == 3


def test_a_baseline_nested_without_end_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run(capsys, "baseline", "--file", str(deep))
    assert code == 2 and err.startswith(f"error: cannot read baseline {deep}: nested too deeply")


def test_a_file_the_system_will_not_let_convbench_write_is_one_line(tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "b.json"
    code, _, err = run(capsys, "baseline", "--arch", "alexnet", "--update", "--file", str(target))
    assert code == 2 and err == f"error: cannot write {target}: Permission denied\n" and not target.exists()
