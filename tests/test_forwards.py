"""What convbench takes from a user's builder and forward: a tensor, a tuple or a dict of logits; anything else, a
builder that raises or returns no module, is a row that says so in words, and the exit code a script can trust."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from cli_helpers import run
from convbench.run.config import ProfileConfig
from convbench.run.profile import run_profile


NUMBER = re.compile(r"^-?[\d,]*\.?\d+(e[+-]?\d+)?[kMG%]?[~!]?$")


# 1. Every figure whole at 80 columns.


# 2. Runs never erase each other.


# 3. Exit codes a script can trust; rows that say what failed.

def test_a_builder_that_raises_is_a_failed_sweep_with_a_row_that_says_so(capsys, tmp_path, user_nets):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:raises,{user_nets}:forty_two,alexnet", "--metrics",
                         "static", "--out", str(tmp_path / "f"))
    assert code == 1
    errors = dict(pd.read_csv(tmp_path / "f" / "profile.csv")[["model", "error"]].values)
    assert errors[f"{user_nets}:raises"] == "building the model failed: RuntimeError: no weights here"
    assert errors[f"{user_nets}:forty_two"] == "the builder returned an int, not an nn.Module"
    assert pd.isna(errors["alexnet"])


def test_strict_fails_a_sweep_with_a_partial_row(capsys, tmp_path, user_nets):
    argv = ["profile", "--arch", f"{user_nets}:plain", "--iters", "1", "--warmup", "0", "--input-size", "16", "--out"]
    assert run(capsys, *argv, str(tmp_path / "a"))[0] == 0
    rows = run_profile(ProfileConfig(arch="inception_v3", metrics="static", batch_sizes=(1,))).rows
    assert rows[0]["status"] == "partial"  # saved bytes cannot exist at batch 1: a fact, exit 0 without --strict
    code, out, err = run(capsys, "profile", "--arch", "inception_v3", "--metrics", "static", "--batch-size", "1",
                         "--strict", "--out", str(tmp_path / "b"))
    assert code == 1
    # at the default batch a counts-only run did not ask for saved bytes: its row is ok, --strict or not
    code, out, err = run(capsys, "profile", "--arch", "inception_v3", "--metrics", "static", "--strict", "--out",
                         str(tmp_path / "c"))
    assert code == 0


# 4. Forwards that return a tuple or a dict.

@pytest.mark.parametrize("builder", ["tuple_net", "dict_net"])
def test_a_tuple_or_a_dict_with_logits_is_profiled_and_trained(capsys, tmp_path, user_nets, builder):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:{builder}", "--iters", "1", "--warmup", "0",
                         "--input-size", "16", "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "p" / "profile.csv")["status"]) == ["ok"]
    code, out, err = run(capsys, "train", "--arch", f"{user_nets}:{builder}", "--steps", "2", "--batch-size", "4",
                         "--input-size", "16", "--out", str(tmp_path / "t"))
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "t" / "train.csv")["status"]) == ["ok"]


@pytest.mark.parametrize("builder, said", [
    ("bad_dict", "the forward returned a dict with keys 'features'; convbench takes a tensor of logits"),
    ("str_net", "the forward returned a str; convbench takes a tensor of logits")])
def test_a_forward_convbench_cannot_use_is_said_in_one_line(capsys, tmp_path, user_nets, builder, said):
    code, out, err = run(capsys, "profile", "--arch", f"{user_nets}:{builder}", "--metrics", "static", "--input-size", "16",
                         "--out", str(tmp_path / "p"))
    assert code == 1
    assert pd.read_csv(tmp_path / "p" / "profile.csv")["error"][0].startswith(said)


# 10. Layers add up to the model.


# 11. Smaller rough edges.


