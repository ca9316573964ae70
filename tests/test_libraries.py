"""timm:NAME and torchvision:NAME, the input size each model is measured at, and --arch parts that name no model,
with stand-ins for the libraries (the ecosystem job, `python -m pytest ecosystem`, holds the real ones)."""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from cli_helpers import run
from convbench.zoo.specs import resolve_models


def _net(width: int = 4, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


def tinynet(): ...  # what the fake timm's entrypoints report as their module


tinynet.__module__ = "timm.models.tinynets"


@pytest.fixture()
def fake_timm(monkeypatch):
    timm = types.ModuleType("timm")
    timm.__version__ = "9.9.9"
    timm.list_models = lambda: ["tiny_a", "tiny_b", *(f"many_{i:03d}" for i in range(120))]
    sizes = {"tiny_a": (3, 96, 96), "tiny_a.wide_in1k": (3, 128, 128)}
    timm.get_pretrained_cfg = lambda name, allow_unregistered=True: (
        SimpleNamespace(input_size=sizes.get(name, (3, 64, 64))) if name in sizes or "." not in name else None)
    timm.create_model = lambda name, pretrained=False, num_classes=10: _net(8 if name.startswith("tiny_a") else 4,
                                                                            num_classes)
    timm.models = SimpleNamespace(model_entrypoint=lambda name: tinynet)
    monkeypatch.setitem(sys.modules, "timm", timm)
    return timm


def test_library_models_are_counted_at_their_published_sizes(capsys, tmp_path, fake_timm):
    code, out, err = run(capsys, "profile", "--arch", "timm:tiny_a,timm:tiny_b,timm:tiny_a.wide_in1k", "--metrics",
                         "static", "--out", str(tmp_path / "p"))
    assert code == 0 and err == "", err
    frame = pd.read_csv(tmp_path / "p" / "profile.csv").set_index("model")
    assert list(frame["input_shape"]) == ["3x96x96", "3x64x64", "3x128x128"]
    assert set(frame["input_from"]) == {"timm pretrained_cfg"} and set(frame["family"]) == {"timm:tinynets"}
    assert frame.loc["timm:tiny_a", "params"] == 3 * 8 * 9 + 8 + 8 * 10 + 10
    assert frame.loc["timm:tiny_a", "macs"] == 96 * 96 * 8 * 27 + 80
    assert frame.loc["timm:tiny_b", "macs"] == 64 * 64 * 4 * 27 + 40
    assert "input" in out  # the table shows the sizes when they differ
    # --input-size overrides every model's own, and says so
    code, _, _ = run(capsys, "profile", "--arch", "timm:tiny_a", "--metrics", "static", "--input-size", "32",
                     "--out", str(tmp_path / "q"))
    row = pd.read_csv(tmp_path / "q" / "profile.csv").iloc[0]
    assert code == 0 and row["input_shape"] == "3x32x32" and row["input_from"] == "--input-size"


def test_a_library_model_s_cached_counts_are_keyed_by_the_library_version(fake_timm):
    spec = resolve_models("timm:tiny_a")[0]
    assert spec.cache_name == "timm:tiny_a==9.9.9"
    assert resolve_models("resnet18")[0].cache_name == "resnet18"


def test_bad_names_are_one_line_each_and_the_other_models_are_measured(capsys, tmp_path, fake_timm):
    code, out, err = run(capsys, "profile", "--arch", "timm:tiny_b,timm:tiny_aa,timm:nothing_*,timm:many_*,resnt18",
                         "--metrics", "static", "--out", str(tmp_path / "r"))
    lines = err.splitlines()
    assert code == 2 and len(lines) == 4, err
    assert lines[0] == "error: unknown timm model 'tiny_aa' (in timm 9.9.9); did you mean timm:tiny_a, timm:tiny_b?"
    assert lines[1] == "error: timm:nothing_* matches no model of timm 9.9.9; `convbench list timm:*` shows them"
    assert lines[2] == ("error: timm:many_* matches 120 models of timm 9.9.9 (more than 100): narrow the pattern, or "
                        "pass --all-matching to take them all")
    assert lines[3].startswith("error: unknown model 'resnt18'; did you mean resnet18")
    assert pd.read_csv(tmp_path / "r" / "profile.csv")["model"].tolist() == ["timm:tiny_b"]
    # nothing left to measure: the same lines, and nothing is written
    code, out, err = run(capsys, "profile", "--arch", "timm:tiny_aa,timm:nothing_*", "--metrics", "static",
                         "--out", str(tmp_path / "none"))
    assert code == 2 and len(err.splitlines()) == 2 and not (tmp_path / "none" / "profile.csv").exists()


def test_the_library_call_refuses_a_bad_name_before_measuring(fake_timm, tmp_path):
    import convbench
    from convbench.errors import UserError
    with pytest.raises(UserError, match="unknown timm model 'tiny_aa'"):
        convbench.profile("timm:tiny_a,timm:tiny_aa", metrics="static", out=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_all_matching_takes_a_wide_pattern(capsys, fake_timm):
    assert len(resolve_models("timm:many_*", all_matching=True)) == 120
    code, out, err = run(capsys, "list", "timm:many_00*", "--json")
    assert code == 0 and err == "" and '"timm:many_009"' in out
    code, out, err = run(capsys, "list", "timm:*")
    assert code == 2 and "--all-matching" in err and len(err.splitlines()) == 1


def test_list_counts_library_models_at_their_own_size(capsys, fake_timm):
    import json
    code, out, err = run(capsys, "list", "timm:tiny_*", "--json")
    rows = json.loads(out)
    assert code == 0 and err == ""
    assert [(r["name"], r["input_size"], r["macs"]) for r in rows] == [
        ("timm:tiny_a", 96, 96 * 96 * 8 * 27 + 80), ("timm:tiny_b", 64, 64 * 64 * 4 * 27 + 40)]
    code, out, err = run(capsys, "list", "timm:tiny_*")
    assert code == 0 and "timm:tiny_a" in out and "96" in out


def test_a_missing_library_or_one_without_pretrained_cfg_is_one_line(capsys, tmp_path, monkeypatch, fake_timm):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision raises ImportError
    code, out, err = run(capsys, "profile", "--arch", "torchvision:resnet18", "--metrics", "static", "--out",
                         str(tmp_path / "m"))
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'convbench[torchvision]'" in err
    del fake_timm.get_pretrained_cfg
    code, out, err = run(capsys, "profile", "--arch", "timm:tiny_a", "--metrics", "static", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.splitlines()) == 1 and "has no pretrained_cfg" in err and "--input-size" in err
    code, out, err = run(capsys, "profile", "--arch", "timm:tiny_a", "--metrics", "static", "--input-size", "48",
                         "--out", str(tmp_path / "s"))
    assert code == 0 and err == ""


def test_a_torchvision_without_its_model_registry_is_one_line(capsys, tmp_path, monkeypatch):
    old = types.ModuleType("torchvision")
    old.__version__ = "0.12.0"
    old.models = SimpleNamespace(resnet18=lambda **kw: _net())
    monkeypatch.setitem(sys.modules, "torchvision", old)
    code, out, err = run(capsys, "profile", "--arch", "torchvision:resnet18", "--metrics", "static", "--out",
                         str(tmp_path / "o"))
    assert code == 2 and err == ("error: torchvision 0.12.0 cannot list or build its models by name (0.15 and newer "
                                 "can): upgrade it, or name the model as package.module:function\n")


def test_train_builds_a_library_model_for_its_classes(capsys, tmp_path, fake_timm):
    code, out, err = run(capsys, "train", "--arch", "timm:tiny_b", "--steps", "2", "--batch-size", "2", "--input-size",
                         "16", "--out", str(tmp_path / "t"))
    assert code == 0, err
    assert pd.read_csv(tmp_path / "t" / "train.csv")["status"].tolist() == ["ok"]


def test_the_gate_and_the_fixtures_time_a_library_model_at_its_published_size(fake_timm):
    from convbench.gate.ab import GateConfig
    from convbench.pytest_plugin import _checked
    config = GateConfig(repo=".", arch="timm:tiny_a,resnet18", batch_sizes=(1,))
    assert [s["input_shape"] for s in config.source["specs"]] == [[3, 96, 96], None]
    assert _checked("convbench_benchmark", "timm:tiny_a") == (3, 96, 96)
    from convbench.errors import UserError
    with pytest.raises(UserError, match="named models, not patterns"):
        GateConfig(repo=".", arch="timm:tiny_*", batch_sizes=(1,))


# A user's builder and its input size.

DECLARING = '''
import torch
from torch import nn


def net():
    return nn.Sequential(nn.Conv2d(1, 2, 3))


def on_function():
    return net()


on_function.input_size = (1, 40, 30)


class Sized(nn.Module):
    input_size = 50

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.conv(x)


def on_model():
    return Sized()


def timm_style():
    model = Sized()
    model.input_size = None
    model.pretrained_cfg = {"input_size": (3, 70, 70)}
    return model


def undeclared():
    return nn.Sequential(nn.Conv2d(3, 2, 3))


def needs(depth, width=3):
    return net()


def reads_values():
    width = int(torch.tensor([2.4, 3.6]).round().sum().item())  # a builder computing its widths with tensors
    return nn.Sequential(nn.Conv2d(3, width, 3))
'''


@pytest.fixture()
def declaring(tmp_path, monkeypatch):
    (tmp_path / "declaring.py").write_text(DECLARING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("declaring", None)
    return "declaring"


def test_a_builder_declares_its_input_size(capsys, tmp_path, declaring):
    arch = ",".join(f"declaring:{f}" for f in ("on_function", "on_model", "timm_style", "undeclared"))
    code, out, err = run(capsys, "profile", "--arch", arch, "--metrics", "static", "--out", str(tmp_path / "d"))
    assert code == 0 and err == "", err
    frame = pd.read_csv(tmp_path / "d" / "profile.csv").set_index("model")
    assert list(frame["input_shape"]) == ["1x40x30", "3x50x50", "3x70x70", "3x224x224"]
    assert list(frame["input_from"]) == ["its builder's input_size", "its model's input_size",
                                         "its model's pretrained_cfg", "default: its builder declares no input size"]
    assert frame.loc["declaring:on_model", "macs"] == 48 * 48 * 2 * 27
    said = " ".join(out.split())
    assert ("note: declaring:undeclared: its builder declares no input size, so it was measured at 3x224x224: pass "
            "--input-size, or declare one (docs/profile.md, 'Input sizes')") in said
    assert said.count("declares no input size") == 1


def test_a_builder_that_needs_arguments_is_refused_in_one_line(capsys, tmp_path, declaring):
    code, out, err = run(capsys, "profile", "--arch", "declaring:needs", "--metrics", "static", "--out", str(tmp_path / "n"))
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --arch declaring:needs needs arguments (depth): --arch calls it with none")


def test_a_user_builder_s_counts_are_never_cached(declaring):
    assert resolve_models("declaring:on_model")[0].cache_name is None


def test_a_builder_that_reads_the_values_it_computes_is_counted_exactly(declaring):
    from convbench.measure.counts import model_counts
    spec = resolve_models("declaring:reads_values", 8)[0]
    counts = model_counts(spec)
    assert counts["params"] == 6 * 27 + 6 and counts["macs"] == 6 * 6 * 6 * 27
    assert all(p.is_meta for p in spec.meta().parameters())
