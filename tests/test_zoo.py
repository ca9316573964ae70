"""The zoo's exact integers: torchvision's published figures where it ships the model, our baseline elsewhere."""
import pytest
import torch
from convbench.measure import complexity

from convbench import UserError, create_model, list_models
from hook_counter import analytic_counts
from convbench.measure.complexity import (
    zoo_model_on_meta, count_params, dispatch_counts, flop_counter_macs, fvcore_counts, input_shape_for, materialize,
    static_summary,
)

# torchvision's weight metadata: (num_params, _ops = GMACs printed to 3 decimals)
TORCHVISION = {
    "alexnet": (61100840, 0.714),
    "googlenet_tv": (6624904, 1.498),
    "inception_v3": (27161264, 5.713),
    "resnet18": (11689512, 1.814),
    "resnet34": (21797672, 3.664),
    "resnet50": (25557032, 4.089),
    "resnet101": (44549160, 7.801),
    "resnet152": (60192808, 11.514),
    "resnext50_32x4d": (25028904, 4.230),
    "resnext101_32x8d": (88791336, 16.414),
    "resnext101_64x4d": (83455272, 15.460),
    "wide_resnet50_2": (68883240, 11.398),
    "wide_resnet101_2": (126886696, 22.753),
    "vgg11": (132863336, 7.609),
    "vgg11_bn": (132868840, 7.609),
    "vgg13": (133047848, 11.308),
    "vgg13_bn": (133053736, 11.308),
    "vgg16": (138357544, 15.470),
    "vgg16_bn": (138365992, 15.470),
    "vgg19": (143667240, 19.632),
    "vgg19_bn": (143678248, 19.632),
}
ALL = list_models()


def test_zoo_has_every_family_the_issue_names():
    expected = {
        "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
        "googlenet", "bn_inception", "inception_v3",
        *(f"resnet{d}" for d in (18, 34, 50, 101, 152)), *(f"resnet{d}_v2" for d in (18, 34, 50, 101, 152)),
        "resnet50_v1", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
        "resnext50_1x64d", "resnext50_2x40d", "resnext50_4x24d", "resnext50_8x14d",
    }
    assert expected <= set(ALL)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_matches_torchvision_published_figures(name):
    params, gmacs = TORCHVISION[name]
    counts = static_summary(name)
    assert counts["params"] == params
    assert round(counts["macs"] / 1e9, 3) == pytest.approx(gmacs, abs=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_exact_counts_are_the_committed_baseline(name, zoo_counts):
    assert name in zoo_counts, f"{name} has no baseline in results/baseline/static.json"
    counts = static_summary(name)
    expected = zoo_counts[name]
    assert (counts["params"], counts["macs"], counts["acts"]) == (expected["params"], expected["macs"], expected["acts"])


def test_baseline_lists_no_model_that_is_gone(zoo_counts):
    assert set(zoo_counts) == set(ALL)


def small_input(name: str, batch_size: int = 1) -> tuple[int, int, int, int]:
    """The smallest input that keeps every stage's grid above 1x1: counters must agree at any size, and a forward
    must give logits at any, so the checks of every model need not pay for full-size inputs."""
    size = 107 if name.startswith("inception_v3") else 96 if name.startswith("alexnet") else 64
    return input_shape_for(name, batch_size, size)


# One model per family and variant: fvcore's JIT trace is the slow counter, and a layer it counts differently shows
# in every model that has the layer.
FVCORE_CHECKED = ("alexnet", "vgg11_bn", "googlenet", "googlenet_tv", "bn_inception", "inception_v3", "resnet18",
                  "resnet50_v1", "resnet50_v2", "resnext50_32x4d", "wide_resnet50_2")


@pytest.mark.parametrize("name", ALL)
def test_four_counters_agree_exactly(name):
    """The dispatch counter (profile's default), forward hooks and torch's FlopCounterMode count the same MACs, layer
    convention and all, and the same activations where they count them; so does fvcore's trace, checked on a model of
    every family and variant."""
    shape = small_input(name)
    hooks = analytic_counts(zoo_model_on_meta(name), shape)
    dispatched = dispatch_counts(zoo_model_on_meta(name), shape)
    assert dispatched["macs"] == hooks["macs"] == flop_counter_macs(zoo_model_on_meta(name), shape)
    assert dispatched["acts"] == hooks["acts"]
    if name in FVCORE_CHECKED:
        traced = fvcore_counts(materialize(zoo_model_on_meta(name)), shape)
        assert (traced["macs"], traced["acts"]) == (dispatched["macs"], dispatched["acts"])


def test_every_family_and_variant_is_checked_against_fvcore():
    assert set(FVCORE_CHECKED) <= set(ALL)
    assert {create_family(n) for n in ALL} == {create_family(n) for n in FVCORE_CHECKED}


def create_family(name: str) -> str:
    from convbench import get_model_info
    return get_model_info(name).family


def test_fvcore_reports_what_it_did_not_count():
    traced = fvcore_counts(materialize(zoo_model_on_meta("resnet50")), input_shape_for("resnet50"))
    assert traced["unsupported_ops"]["aten::batch_norm"] == 53
    assert traced["unsupported_ops"]["aten::max_pool2d"] == 1


def test_the_dispatch_counter_reports_what_it_did_not_count_and_counts_per_module():
    counted = dispatch_counts(zoo_model_on_meta("resnet50"), input_shape_for("resnet50"), by_module=True)
    assert counted["unsupported_ops"]["aten::native_batch_norm"] == 53
    assert counted["unsupported_ops"]["aten::max_pool2d_with_indices"] == 1
    modules = counted["modules"]
    assert modules[""]["macs"] == counted["macs"] == 4089184256
    assert modules["layer1"]["macs"] == sum(modules[f"layer1.{i}"]["macs"] for i in range(3))
    assert modules["fc"] == {"macs": 2048 * 1000, "acts": 1000}


def test_a_functional_matmul_is_counted_by_both_op_level_counters():
    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Conv2d(3, 8, 1)

        def forward(self, x):
            q = self.proj(x).flatten(2)                    # N, 8, HW
            return torch.bmm(q.transpose(1, 2), q).mean()  # N, HW, HW: HW*HW*8 MACs per image
    shape = (2, 3, 4, 4)
    with torch.device("meta"):
        meta = Attention()
    dispatched = dispatch_counts(meta, shape)
    traced = fvcore_counts(materialize(Attention()), shape)
    assert dispatched["macs"] == traced["macs"] == 16 * 3 * 8 + 16 * 16 * 8
    assert dispatched["acts"] == traced["acts"] == 16 * 8 + 16 * 16


@pytest.mark.parametrize("name", ALL)
def test_forward_on_cpu_returns_logits(name):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(small_input(name, batch_size=2)))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


def test_googlenet_paper_5x5_vs_torchvision_3x3():
    paper, tv = static_summary("googlenet"), static_summary("googlenet_tv")
    # Only the nine "5x5" convs differ: (25 - 9) weights per (reduce channels x 5x5 channels) pair.
    assert paper["params"] - tv["params"] == 16 * sum(r * c for r, c in [(16, 32), (32, 96), (16, 48), (24, 64), (24, 64), (32, 64), (32, 128), (32, 128), (48, 128)])
    assert (paper["params"], paper["macs"]) == (7005832, 1582671872)


def test_resnet50_v1_is_the_papers_3_8_gmacs():
    assert round(static_summary("resnet50_v1")["macs"] / 1e9, 2) == 3.86
    assert static_summary("resnet50_v1")["params"] == static_summary("resnet50")["params"]


def test_resnext_table2_keeps_complexity_within_four_percent():
    base = static_summary("resnext50_1x64d")
    assert base == static_summary("resnet50")
    for name in ("resnext50_2x40d", "resnext50_4x24d", "resnext50_8x14d", "resnext50_32x4d"):
        counts = static_summary(name)
        assert abs(counts["macs"] / base["macs"] - 1) < 0.05
        assert abs(counts["params"] / base["params"] - 1) < 0.03


def test_auxiliary_heads_run_only_in_training():
    net = create_model("googlenet", aux_logits=True).train()
    logits, aux2, aux1 = net(torch.randn(2, 3, 224, 224))
    assert logits.shape == aux1.shape == aux2.shape == (2, 1000)
    assert count_params(net) > count_params(create_model("googlenet"))
    # Eval forward skips the aux heads, so their MACs are not in the count even though their params are.
    assert static_summary("googlenet", aux_logits=True)["macs"] == static_summary("googlenet")["macs"]
    assert static_summary("inception_v3")["macs"] == static_summary("inception_v3_noaux")["macs"]


def test_inception_v3_factorisation_saves_what_the_arithmetic_says():
    asym, full = static_summary("inception_v3_noaux"), static_summary("inception_v3_7x7")
    # Each 1x7+7x1 pair (c->c->c') becomes one 7x7 (c->c'): 49*c*c' vs 7*c*c + 7*c*c' weights.
    c7s, extra = (128, 160, 160, 192), 0
    for c in c7s:
        extra += (49 * c * 192 - (7 * c * c + 7 * c * 192))  # branch7x7
        extra += (49 * c * c - 14 * c * c) + (49 * c * 192 - (7 * c * c + 7 * c * 192))  # branch7x7dbl
    # BN params shrink too: each removed intermediate conv had a BN with 2*c parameters.
    bn_removed = sum(2 * c * 3 for c in c7s)
    assert full["params"] - asym["params"] == extra - bn_removed
    assert full["macs"] - asym["macs"] == extra * 17 * 17  # every changed conv runs on the 17x17 grid


def test_create_model_overrides():
    assert create_model("resnet18", num_classes=10).fc.out_features == 10
    assert create_model("resnet18", num_classes=None).fc.out_features == 1000  # None keeps the default
    with pytest.raises(UserError, match="takes no option"):
        create_model("resnet18", colour="blue")


def test_list_models_patterns():
    assert list_models("resnet50") == ["resnet50"]
    assert set(list_models("vgg1?")) == {"vgg11", "vgg13", "vgg16", "vgg19"}
    assert list_models("alexnet, vgg16") == ["alexnet", "vgg16"]
    assert list_models("all") == ALL
    with pytest.raises(UserError, match="did you mean resnet50"):
        list_models("resnet5")
    with pytest.raises(UserError, match="unknown model 'nosuchnet'"):
        create_model("nosuchnet")


class _AttentionAndSamePadding(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding="same")
        self.qkv = torch.nn.Linear(16, 48)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2)                    # 64 tokens of 16
        q, k, v = self.qkv(tokens).chunk(3, -1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).mean(1)


def test_where_fvcore_differs_the_note_names_the_ops_each_counter_saw():
    with torch.device("meta"):
        model = _AttentionAndSamePadding()
    fvcore = complexity.count(model, (1, 3, 8, 8), "fvcore")
    dispatch = complexity.count(model, (1, 3, 8, 8))
    conv, qkv, attention = 64 * 16 * 3 * 9, 64 * 16 * 48, 2 * 64 * 64 * 16
    assert dispatch["macs"] == conv + qkv + attention and "note" not in dispatch
    assert fvcore["macs"] == qkv  # fvcore traces the same-padding conv and the fused attention without counting them
    assert "aten::_convolution_mode" in fvcore["note"] and "aten::scaled_dot_product_attention" in fvcore["note"]
    assert f"the dispatch counter {dispatch['macs']:,}" in fvcore["note"] and "aten::bmm x2" in fvcore["note"]
