"""Grad-CAM and its gradient variants on vision transformers: small random torchvision and timm ViTs against a hand
computation."""

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision

import gradcam_utils as gu
from gradcam_utils.vit import token_grid


def small_vit():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    # Torchvision starts the head at zero: every gradient would be zero
    torch.nn.init.normal_(vit.heads.head.weight, std=0.1)
    return vit.eval()


def hand_gradcam(model, x, target, layer, prefix):
    """Grad-CAM by hand: keep the layer's tokens, drop the prefix tokens, a 4 x 4 grid of patches, Eq. 1 and 2 of
    Selvaraju et al."""
    kept = {}
    handle = gu.get_layer(model, layer).register_forward_hook(
        lambda module, inputs, output: kept.setdefault("tokens", output)
    )
    try:
        logits = model(x)
    finally:
        handle.remove()
    tokens = kept["tokens"]
    (gradients,) = torch.autograd.grad(logits[:, target].sum(), tokens)
    grid = lambda t: t[:, prefix:].transpose(1, 2).reshape(len(t), -1, 4, 4)  # noqa: E731
    activations, gradients = grid(tokens.detach()), grid(gradients)
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def test_gradcam_on_a_torchvision_vit_equals_the_hand_computation():
    vit, x = small_vit(), torch.randn(2, 3, 32, 32)
    assert gu.list_layers(vit) == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1.ln_1"]
    for layer in gu.list_layers(vit):
        expected = hand_gradcam(vit, x, 3, layer, prefix=1)
        assert expected.abs().max() > 0
        torch.testing.assert_close(gu.gradcam(vit, x, 3, layer), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        gu.gradcam(vit, x, 3), hand_gradcam(vit, x, 3, "encoder.layers.encoder_layer_1.ln_1", prefix=1)
    )


def test_the_last_blocks_output_has_zero_patch_gradients_so_it_is_not_the_default():
    vit, x = small_vit(), torch.randn(1, 3, 32, 32)
    assert gu.default_layer(vit) == "encoder.layers.encoder_layer_1.ln_1"
    # Only the class token feeds the head
    assert gu.gradcam(vit, x, 3, "encoder.layers.encoder_layer_1").abs().max() == 0


def test_a_timm_vit_drops_its_class_and_register_tokens():
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8, depth=2, reg_tokens=4
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    assert vit.num_prefix_tokens == 5 and gu.list_layers(vit) == ["blocks.0", "blocks.1.norm1"]
    torch.testing.assert_close(
        gu.gradcam(vit, x, 2, "blocks.0"), hand_gradcam(vit, x, 2, "blocks.0", prefix=5)[0], rtol=1e-4, atol=1e-6
    )
    for method in ("gradcam_pp", "xgradcam", "hirescam", "layercam", "eigencam"):
        assert getattr(gu, method)(vit, x, [1, 2]).shape == (2, 32, 32)


def test_tokens_that_form_no_grid_get_a_one_line_error():
    vit, x = small_vit(), torch.randn(1, 3, 32, 32)
    with pytest.raises(
        gu.GradCamError, match="17 tokens less 0 prefix token.s. leave 17, which is no square grid; pass reshape="
    ) as info:
        gu.gradcam(vit, x, 3, "encoder.layers.encoder_layer_0", reshape=lambda tokens: token_grid(tokens, prefix=0))
    assert "\n" not in str(info.value)
    with pytest.raises(gu.GradCamError, match="for tokens, pass reshape=a function from them to"):
        gu.ForwardPass(torch.nn.Sequential(torch.nn.Flatten(2)), x, ["0"])
