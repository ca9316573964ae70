"""convbench's counts held to timm's and torchvision's own models, built by the libraries themselves: parameters as
`sum(p.numel())`, MACs as torch's FlopCounterMode / 2 (fused attention off, so that attention's matmuls are
ops it counts) and as fvcore's convolution and matmul handles; and the names working through the CLI, the gate
and the pytest fixtures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from convbench.cli.main import main
from convbench.measure.complexity import fvcore_counts, materialize
from convbench.measure.counts import model_counts
from convbench.zoo.specs import resolve_models
from ecosystem.networks import TIMM, TORCHVISION

REPO = Path(__file__).resolve().parent.parent

# Where FlopCounterMode / 2 and convbench differ on purpose, with the op that makes it: empty means none of the
# networks above does.
FLOP_COUNTER_DIFFERS: dict[str, str] = {}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ended:
        main(list(args))
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def _convbench(arch: str) -> tuple[tuple[int, int, int], dict]:
    spec = resolve_models(arch)[0]
    return spec.input_shape, model_counts(spec)


def _flop_counter_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape, device=next(model.parameters()).device))
    assert counter.get_total_flops() % 2 == 0
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("zoo", sorted(TORCHVISION))
def test_a_zoo_model_counts_exactly_as_torchvision_s_own(zoo):
    name, keywords = TORCHVISION[zoo]
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name, weights=None, **keywords)
    shape, ours = _convbench(zoo)
    assert ours["params"] == sum(p.numel() for p in theirs.parameters())
    assert ours["macs"] == _flop_counter_macs(theirs, shape)
    assert ours["macs"] == fvcore_counts(materialize(theirs), (1, *shape))["macs"]
    if not keywords:  # the same network named the torchvision way, at torchvision's published input size
        tv_shape, tv = _convbench(f"torchvision:{name}")
        assert tv_shape == shape and (tv["params"], tv["macs"]) == (ours["params"], ours["macs"])


@pytest.mark.parametrize("name", TIMM)
def test_a_timm_network_counts_as_the_library_and_flop_counter_mode_do(name):
    timm.layers.set_fused_attn(False)  # attention as matmuls and a softmax: ops FlopCounterMode counts
    theirs = timm.create_model(name, pretrained=False)
    shape, ours = _convbench(f"timm:{name}")
    assert shape == tuple(theirs.pretrained_cfg["input_size"])
    assert ours["params"] == sum(p.numel() for p in theirs.parameters())
    reference = _flop_counter_macs(theirs, shape)
    if name in FLOP_COUNTER_DIFFERS:
        assert ours["macs"] != reference, f"{name} no longer differs: drop it from FLOP_COUNTER_DIFFERS"
    else:
        assert ours["macs"] == reference
    assert 0 < ours["other_flops"] < ours["macs"]


def test_flop_counter_mode_misses_fused_attention_which_convbench_counts():
    """With timm's fused attention on (as it ships), the CPU's scaled_dot_product_attention kernel is an op
    FlopCounterMode has no formula for: it misses exactly the attention's two matmuls per head, which convbench
    counts either way (on the meta device the op decomposes into them)."""
    timm.layers.set_fused_attn(True)
    try:
        theirs = timm.create_model("vit_tiny_patch16_224", pretrained=False)
        shape, ours = _convbench("timm:vit_tiny_patch16_224")
        tokens, width, depth = 197, 192, 12
        attention = depth * 2 * tokens * tokens * width   # QK^T and AV over all heads, per block
        assert ours["macs"] - _flop_counter_macs(theirs, shape) == attention == 178_831_872
    finally:
        timm.layers.set_fused_attn(False)


def test_every_torchvision_classification_model_lists_with_torchvision_s_published_figures(capsys):
    """`convbench list torchvision:*` against the weights' own metadata: parameters exactly, GMACs as torchvision
    rounds them (its tables' `_ops`), each at its default weights' crop size."""
    code, out, err = cli(capsys, "list", "torchvision:*", "--json")
    assert code == 0 and err == ""
    rows = {r["name"]: r for r in json.loads(out)}
    models = torchvision.models
    assert set(rows) == {f"torchvision:{n}" for n in models.list_models(module=models)}
    differ = []
    for name, row in rows.items():
        weights = models.get_model_weights(name.partition(":")[2]).DEFAULT
        assert row["error"] is None, (name, row["error"])
        assert row["input_size"] == weights.transforms.keywords["crop_size"], name
        meta = weights.meta
        if (row["params"], round(row["macs"] / 1e9, 3)) != (meta["num_params"], meta["_ops"]):
            differ.append((name, row["params"], meta["num_params"], row["macs"], meta["_ops"]))
    # googlenet: weights=None keeps the auxiliary heads (13.0M), which its weights' model drops (6.6M); torchvision's
    # GFLOPS for it are of the eval forward, which convbench's MACs agree with.
    assert [d[0] for d in differ] == ["torchvision:googlenet"], differ
    assert round(rows["torchvision:googlenet"]["macs"] / 1e9, 3) == models.GoogLeNet_Weights.DEFAULT.meta["_ops"]


def test_the_issue_s_command_counts_each_at_its_own_size(capsys, tmp_path):
    arch = "timm:inception_v3,torchvision:inception_v3,timm:resnet50,torchvision:resnet50,timm:vit_tiny_patch16_224"
    code, out, err = cli(capsys, "profile", "--arch", arch, "--metrics", "static", "--out", str(tmp_path / "p"))
    assert code == 0 and err == "", err
    frame = pd.read_csv(tmp_path / "p" / "profile.csv").set_index("model")
    assert list(frame.index) == arch.split(",") and set(frame["status"]) == {"ok"}
    assert list(frame["input_size"]) == [299, 299, 224, 224, 224]
    assert frame.loc["timm:inception_v3", "input_from"] == "timm pretrained_cfg"
    assert frame.loc["torchvision:inception_v3", "input_from"].startswith("torchvision Inception_V3_Weights")
    for name in arch.split(","):
        library, _, model = name.partition(":")
        built = timm.create_model(model) if library == "timm" else torchvision.models.get_model(model, weights=None)
        assert frame.loc[name, "params"] == sum(p.numel() for p in built.parameters()), name
    assert frame.loc["timm:inception_v3", "macs"] == frame.loc["torchvision:inception_v3", "macs"] == 5_713_216_096


def test_library_names_build_and_time_through_the_cli(capsys, tmp_path):
    code, out, err = cli(capsys, "profile", "--arch", "timm:resnet18,torchvision:googlenet", "--iters", "2", "--warmup",
                         "0", "--no-cpu-memory", "--no-ceiling", "--out", str(tmp_path / "t"))
    assert code == 0 and err == "", err
    frame = pd.read_csv(tmp_path / "t" / "profile.csv")
    assert set(frame["status"]) == {"ok"} and frame["latency_ms_p50"].gt(0).all()


def test_a_typo_a_pattern_too_wide_and_no_match_are_one_line_each_and_the_rest_measured(capsys, tmp_path):
    code, out, err = cli(capsys, "profile", "--arch", "timm:resnet18,timm:resnt50,timm:*,torchvision:nothing_*",
                         "--metrics", "static", "--out", str(tmp_path / "r"))
    lines = err.splitlines()
    assert code == 2 and len(lines) == 3, err
    assert lines[0].startswith("error: unknown timm model 'resnt50'") and "did you mean timm:resnet50" in lines[0]
    assert "matches" in lines[1] and "--all-matching" in lines[1]
    assert lines[2].startswith("error: torchvision:nothing_* matches no model of torchvision")
    assert pd.read_csv(tmp_path / "r" / "profile.csv")["model"].tolist() == ["timm:resnet18"]


def test_list_counts_a_library_pattern_at_each_model_s_size(capsys):
    code, out, err = cli(capsys, "list", "timm:inception_v*")
    assert code == 0 and err == ""
    assert "timm:inception_v3" in out and "timm:inception_v4" in out and "299" in out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYTEST_")}
    return {**env, "COLUMNS": "200"}


def test_the_gate_times_a_library_model_in_lockstep(tmp_path):
    run = subprocess.run([sys.executable, "-m", "convbench", "gate", "--arch", "timm:resnet18", "--rounds", "3",
                          "--repeat", "1", "--base", "HEAD", "--input-size", "64", "--out", str(tmp_path / "g")],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode in (0, 4), run.stdout + run.stderr   # 4: a case this runner's clock could not resolve
    gate = pd.read_csv(tmp_path / "g" / "gate.csv")
    assert gate["benchmark"].str.startswith("timm:resnet18[b1]").all()


def test_the_fixtures_take_library_names(tmp_path):
    (tmp_path / "test_team.py").write_text(textwrap.dedent("""
        def test_counts(convbench_counts):
            counts = convbench_counts("timm:resnet18", file="baseline.json")
            assert counts["timm:resnet18"]["input_size"] == 224

        def test_speed(convbench_benchmark):
            convbench_benchmark("torchvision:resnet18", rounds=2, warmup=0, input_shape=(3, 64, 64))
    """))
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    first = subprocess.run([*base, "--convbench-update", "test_team.py"], cwd=tmp_path, env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads((tmp_path / "baseline.json").read_text())["models"]["timm:resnet18"]["params"] == 11_689_512
    again = subprocess.run([*base, "test_team.py"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
