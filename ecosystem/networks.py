"""The networks the ecosystem job holds convbench to: timm's across its families, and every zoo model torchvision
also has, with the keywords that make torchvision's build the zoo's."""

# 60 timm networks, at least one of each family the issue names; small members, so that their real forwards (the
# references' counts) take seconds.
TIMM = [
    # ResNet / ResNeXt and relatives
    "resnet18", "resnet50", "resnet26d", "resnext50_32x4d", "seresnext26d_32x4d", "res2net50_26w_4s", "resnest14d",
    "skresnet18", "dla34", "cspresnet50", "ecaresnet26t", "resnetrs50",
    # EfficientNet (the tf_ ones pad 'same')
    "efficientnet_b0", "efficientnet_b2", "tf_efficientnet_b0", "efficientnetv2_rw_t", "tf_efficientnetv2_b0",
    "mixnet_s", "mnasnet_100", "fbnetc_100",
    # MobileNet v2-v4
    "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_050", "mobilenetv4_conv_small",
    "mobilenetv4_hybrid_medium",
    # RegNet
    "regnetx_002", "regnety_004", "regnety_016", "regnetz_b16",
    # ConvNeXt
    "convnext_atto", "convnext_tiny", "convnextv2_atto",
    # GhostNet, RexNet, HardCoRe-NAS style
    "ghostnet_100", "ghostnetv2_100", "rexnet_100",
    # DenseNet
    "densenet121", "densenet169",
    # Inception, Xception
    "inception_v3", "inception_v4", "inception_resnet_v2", "legacy_xception", "xception41",
    # RepVGG and reparameterisable nets
    "repvgg_a0", "repghostnet_100", "repvit_m1",
    # Vision transformers
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "vit_small_patch16_224",
    # hybrids: convolutions and attention
    "levit_128s", "mobilevit_xs", "coatnet_nano_rw_224", "maxvit_nano_rw_256", "efficientformer_l1", "edgenext_x_small",
    "fastvit_t8", "tiny_vit_5m_224",
    # others shipped widely
    "hrnet_w18_small", "cspdarknet53", "dpn68", "selecsls42b",
]

# zoo name -> (torchvision name, keywords for torchvision's builder that make its model the zoo's)
TORCHVISION = {
    "alexnet": ("alexnet", {}),
    **{f"vgg{d}{bn}": (f"vgg{d}{bn}", {}) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"resnet{d}": (f"resnet{d}", {}) for d in (18, 34, 50, 101, 152)},
    "resnext50_32x4d": ("resnext50_32x4d", {}),
    "resnext101_32x8d": ("resnext101_32x8d", {}),
    "resnext101_64x4d": ("resnext101_64x4d", {}),
    "wide_resnet50_2": ("wide_resnet50_2", {}),
    "wide_resnet101_2": ("wide_resnet101_2", {}),
    "googlenet_tv": ("googlenet", {"aux_logits": False}),   # the zoo's port leaves out the auxiliary heads
    "inception_v3": ("inception_v3", {}),
}
