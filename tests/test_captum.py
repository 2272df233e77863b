"""The five methods agree with captum's implementations, where captum is right."""

import types

import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam, Saliency
from conftest import assert_maps_close, copy_of

import gradcam_utils as gu

TARGETS = [3, 500, 999]


def random_torchvision(arch, size):
    torch.manual_seed(0)
    model = gu.load_model(arch, weights=None, device="cpu")
    x = torch.randn(1, 3, size, size)
    return model, x


def captum_maps(model, x, layer_module, target):
    """captum's five maps for one class, on the models where its hooks see every rectifier."""
    return {
        "vanilla_backprop": Saliency(model).attribute(x, target=target, abs=False),
        "deconvnet": Deconvolution(model).attribute(x, target=target),
        "guided_backprop": GuidedBackprop(model).attribute(x, target=target),
        "gradcam": LayerAttribution.interpolate(
            LayerGradCam(model, layer_module).attribute(x, target=target, relu_attributions=True),
            x.shape[-2:],
            "bilinear",
        ),
        "guided_gradcam": GuidedGradCam(model, layer_module).attribute(x, target=target, interpolate_mode="bilinear"),
    }


def check_against_captum(ours_model, x, layer, captum_model=None):
    captum_model = captum_model or copy_of(ours_model)
    ours = gu.explain(ours_model, x, TARGETS, layer)
    layer_module = gu.get_layer(captum_model, layer)
    for i, target in enumerate(TARGETS):
        theirs = captum_maps(captum_model, x.clone(), layer_module, target)
        for method in gu.METHODS:
            expected = theirs[method][0, 0] if method == "gradcam" else theirs[method][0]
            assert_maps_close(ours[method][i], expected)


@pytest.mark.parametrize("arch, layer", [("vgg11", "features.18"), ("resnet18", "layer4")])
def test_random_torchvision_models_match_captum(arch, layer):
    model, x = random_torchvision(arch, 224)
    check_against_captum(model, x, layer)


class ReLU6Module(torch.nn.ReLU):
    """ReLU6 disguised as nn.ReLU: captum's guided and deconvnet hooks only look for nn.ReLU."""

    def forward(self, x):
        return F.hardtanh(x, 0.0, 6.0)


def test_embedded_model_with_real_weights_matches_captum(lite0, cat_dog):
    captum_model = copy_of(lite0)
    for parent in list(captum_model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU6):
                setattr(parent, name, ReLU6Module())
    check_against_captum(lite0, cat_dog, "blocks.5", captum_model)


def with_relu_modules(model):
    """A copy of an inception_v3 or densenet whose functional F.relu calls are nn.ReLU modules, for captum."""
    model = copy_of(model)
    for module in model.modules():
        if isinstance(module, torchvision.models.inception.BasicConv2d):
            module.relu = torch.nn.ReLU()
            module.forward = types.MethodType(lambda self, x: self.relu(self.bn(self.conv(x))), module)
    if isinstance(model, torchvision.models.DenseNet):
        model.relu = torch.nn.ReLU()

        def forward(self, x):
            features = self.relu(self.features(x))
            return self.classifier(torch.flatten(F.adaptive_avg_pool2d(features, (1, 1)), 1))

        model.forward = types.MethodType(forward, model)
    return model


@pytest.mark.parametrize("arch, size", [("inception_v3", 299), ("densenet121", 224)])
def test_functional_relu_gets_the_guided_rule(arch, size):
    """The seed's bug: F.relu inside inception_v3 and densenet got plain gradients. Here it gets the guided rule."""
    model, x = random_torchvision(arch, size)
    reference = with_relu_modules(model)
    theirs = GuidedBackprop(reference).attribute(x.clone(), target=TARGETS[0])
    ours = gu.guided_backprop(model, x, TARGETS[0])
    assert_maps_close(ours, theirs[0])
    # And the check has teeth: captum on the unmodified model (F.relu unseen) gives a different map.
    blind = GuidedBackprop(copy_of(model)).attribute(x.clone(), target=TARGETS[0])
    assert not torch.allclose(ours, blind[0], rtol=1e-3, atol=1e-3 * blind.abs().max().item())
