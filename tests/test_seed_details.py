"""The seeds' last details: AlexNet as the 2012 article published it, the pooling comparison (overlapping vs not,
LRN vs none, two groups vs dense), and the training knobs of the Inception-v3 article (label smoothing, the
auxiliary heads' weight)."""
from __future__ import annotations

import textwrap

import pandas as pd
import pytest
import torch

from cli_helpers import run
from convbench.measure.counts import model_counts
from convbench.zoo.comparisons import get_cases
from convbench.zoo.registry import get_model_info
from convbench.zoo.specs import ModelSpec, resolve_models


def test_alexnet_as_published_has_the_articles_layers_and_exact_counts():
    spec = resolve_models("alexnet_2012")[0]
    counts = model_counts(spec)
    assert spec.input_shape == (3, 227, 227)
    # conv1 34,944 + conv2 307,456 (2 groups) + conv3 885,120 + conv4 663,936 + conv5 442,624 + fc 58,631,144
    assert counts["params"] == 60_965_224
    # 105,415,200 + 223,948,800 + 149,520,384 + 112,140,288 + 74,760,192 (convs) + 58,621,952 (fcs)
    assert counts["macs"] == 724_406_816
    model = get_model_info("alexnet_2012").build()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2] and [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LocalResponseNorm)]
    assert [(n.size, n.alpha, n.beta, n.k) for n in norms] == [(5, 1e-4, 0.75, 2.0)] * 2
    assert {(p.kernel_size, p.stride) for p in model.modules() if isinstance(p, torch.nn.MaxPool2d)} == {(3, 2)}
    assert model(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)
    dense = model_counts(ModelSpec("dense", "alexnet", (3, 227, 227), lambda: get_model_info("alexnet_2012").build(groups=1)))
    assert dense["macs"] == 724_406_816 + 223_948_800 + 112_140_288 + 74_760_192  # conv2, conv4, conv5 doubled


def test_both_alexnets_are_listed_with_their_papers(capsys):
    code, out, _ = run(capsys, "list", "alexnet*", "--json")
    import json
    listed = {m["name"]: m for m in json.loads(out)}
    assert code == 0 and set(listed) == {"alexnet", "alexnet_2012"}
    assert listed["alexnet_2012"]["paper"].startswith("Krizhevsky 2012, ImageNet Classification")
    assert listed["alexnet"]["paper"].startswith("Krizhevsky 2014, One weird trick")


def test_bad_lrn_constants_are_one_line():
    from convbench.errors import UserError
    from convbench.zoo.models.alexnet import local_response_norm
    with pytest.raises(UserError, match="local response normalisation needs a size of at least 1"):
        local_response_norm(size=0)


def test_the_pooling_comparison_has_three_cases_and_judges_zero_mac_cases_on_time(capsys, tmp_path):
    cases = get_cases("pooling")
    assert [c.name for c in cases] == ["overlapping 3x3/2 vs 2x2/2 max pooling", "LRN vs none after conv1",
                                       "AlexNet: two groups on conv2/4/5 vs dense"]
    assert "pooling" in {c.comparison for c in get_cases("all")}
    code, out, err = run(capsys, "compare", "pooling", "--pairs", "6", "--shape", "16,13,13", "--out", str(tmp_path / "c"))
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "c" / "compare.csv").set_index("variant")
    pool = rows.loc["2x2/2"]
    assert pool.macs == 0 and pool.claimed_ratio == pytest.approx(4 / 9) and pd.isna(pool.counted_ratio)
    assert pool.verdict.endswith("for the claimed 0.44x of the work") or "no MACs on either side" in pool.verdict
    assert "nan" not in " ".join(rows.verdict.dropna())
    assert rows.loc["conv1+ReLU", "counted_ratio"] == 1.0  # LRN holds no MACs
    assert rows.loc["alexnet_2012 groups=2", "counted_ratio"] == pytest.approx(724_406_816 / 1_135_256_096)


def test_the_aux_comparison_builds_inception_v3_with_and_without_its_head():
    from convbench.run.config import TrainConfig
    from convbench.run.training import side_has_aux, sides_for, training_flops
    with_aux, without = sides_for(TrainConfig(compare="inception_v3_aux"))
    assert (with_aux.run, without.run) == ("inception_v3 with aux head", "inception_v3 without")
    assert side_has_aux(with_aux) and not side_has_aux(without)
    # The head's forward and backward are part of a training step: its FLOPs show in the step's count.
    assert training_flops(with_aux, 10) > training_flops(without, 10)
    (dropped,) = sides_for(TrainConfig(arch="inception_v3", aux_weight=0))
    assert not side_has_aux(dropped) and training_flops(dropped, 10) == training_flops(without, 10)


@pytest.fixture()
def aux_net(tmp_path, monkeypatch):
    (tmp_path / "auxnet.py").write_text(textwrap.dedent('''
        from torch import nn

        class WithAux(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
                self.head, self.aux = nn.Linear(8, 10), nn.Linear(8, 10)

            def forward(self, x):
                h = self.body(x)
                return (self.head(h), self.aux(h)) if self.training else self.head(h)

        def build():
            return WithAux()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "auxnet:build"


def test_train_records_its_label_smoothing_and_aux_weight(aux_net, capsys, tmp_path):
    runs = {}
    for weight in ("0.5", "0"):
        code, out, err = run(capsys, "train", "--arch", aux_net, "--steps", "2", "--batch-size", "4", "--input-size", "16",
                             "--label-smoothing", "0.1", "--aux-weight", weight, "--out", str(tmp_path / weight))
        assert code == 0, err
        runs[weight] = pd.read_csv(tmp_path / weight / "train.csv").iloc[0]
    assert runs["0.5"].label_smoothing == 0.1 and runs["0.5"].aux_weight == 0.5
    assert runs["0"].aux_weight == 0  # a user's network keeps its heads in the step; their loss weighs nothing
    assert runs["0.5"].first_loss > runs["0"].first_loss  # same seed, same first batch: the aux loss added on top


@pytest.mark.parametrize("argv, said", [
    (["--label-smoothing", "1"], "--label-smoothing is an epsilon from 0 to below 1"),
    (["--label-smoothing", "-0.1"], "--label-smoothing is an epsilon from 0 to below 1"),
    (["--aux-weight", "-1"], "--aux-weight must be 0 or more"),
    (["--arch", "resnet18", "--aux-weight", "0.3"], "--aux-weight: resnet18 has no auxiliary heads"),
    (["--arch", "googlenet", "--aux-weight", "0"], "--aux-weight: googlenet has no auxiliary heads"),
])
def test_bad_training_knobs_are_one_line(capsys, tmp_path, argv, said):
    code, _, err = run(capsys, "train", *argv, "--steps", "1", "--out", str(tmp_path / "t"))
    assert code == 2 and err.startswith(f"error: {said}") and len(err.splitlines()) == 1, err
