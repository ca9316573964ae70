"""other_flops: the arithmetic MACs leave out, counted per output element at the weights docs/profile.md gives."""
import pytest
import torch
from torch import nn

from convbench.measure.complexity import dispatch_counts
from convbench.zoo.meta import build_on_meta


def _counted(build, shape):
    with build_on_meta():
        model = build()
    return dispatch_counts(model, shape)


def test_a_small_network_s_other_flops_add_up_by_hand():
    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10), nn.Softmax(-1))
    counts = _counted(build, (1, 3, 8, 8))
    conv_out = 8 * 8 * 8
    assert counts["macs"] == conv_out * 27 + 8 * 10
    expected = (conv_out            # the convolution's bias
                + 2 * conv_out      # batch norm in eval: a scale and a shift per element
                + conv_out          # ReLU
                + 4 * 8 * 4 * 4     # 2x2 max pooling: its window per output element
                + 8 * 4 * 4         # global average pooling: one add per input element
                + 10                # the linear layer's bias
                + 5 * 10)           # softmax: max, subtract, exp, sum, divide per element
    assert counts["other_flops"] == expected


def test_upsampling_normalisation_and_activations_at_their_weights():
    def build():
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.GELU(),
                             nn.LayerNorm(8, elementwise_affine=False), nn.Hardswish(), nn.GroupNorm(2, 2))
    counts = _counted(build, (1, 2, 4, 4))
    out = 2 * 8 * 8
    assert counts["macs"] == 0
    assert counts["other_flops"] == 4 * out + out + 4 * out + out + 5 * out


def test_batch_shares_are_per_image_and_training_batch_norm_counts_its_statistics():
    def build():
        return nn.Sequential(nn.BatchNorm2d(4))
    assert _counted(build, (3, 4, 5, 5))["other_flops"] == 2 * 4 * 5 * 5
    from convbench.measure.complexity import other_flops
    x = torch.zeros(2, 4, 5, 5, device="meta")
    training = other_flops(torch.ops.aten.native_batch_norm.default, (x, None, None, None, None, True, 0.1, 1e-5), x)
    assert training == 4 * x.numel()  # 5 per element with affine weights, 4 without


def test_resnet18_s_other_flops_equal_a_count_made_from_its_modules_outputs():
    """Independent of the dispatch counter: forward hooks on the modules, with each op's weight applied to their
    output shapes (a BasicBlock's residual add is one FLOP per element of its output)."""
    from convbench.zoo.registry import create_model
    with build_on_meta():
        model = create_model("resnet18")
    total = [0]

    def hook(module, inputs, output):
        n = output.numel()
        if isinstance(module, nn.BatchNorm2d):
            total[0] += 2 * n
        elif isinstance(module, nn.ReLU):
            total[0] += n
        elif isinstance(module, nn.MaxPool2d):
            total[0] += n * module.kernel_size ** 2
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            total[0] += inputs[0].numel()
        elif isinstance(module, nn.Linear):
            total[0] += n  # its bias
        elif type(module).__name__ == "BasicBlock":
            total[0] += n  # the residual add
    for m in model.modules():
        m.register_forward_hook(hook)
    counts = dispatch_counts(model, (1, 3, 224, 224))
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in model.modules())
    assert counts["other_flops"] == total[0]


def test_profile_rows_carry_other_flops(tmp_path, monkeypatch):
    import convbench
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    frame = convbench.profile("resnet18", metrics="static")
    assert frame["other_flops"][0] == dispatch_counts(_meta("resnet18"), (1, 3, 224, 224))["other_flops"]


def _meta(name):
    from convbench.zoo.registry import create_model
    with build_on_meta():
        return create_model(name)
