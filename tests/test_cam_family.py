"""The Grad-CAM family against torchcam and pytorch-grad-cam, read from their code, and its promises: shapes, one pass,
errors."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import EigenCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchcam import methods as torchcam

import gradcam_utils as gu
from gradcam_utils.cam_family import cams, eigen_cam
from gradcam_utils.method_table import CAM_FAMILY


def ours(model, x, method, target, layer, **options):
    """Our raw map at the layer's own resolution: [B, h, w]."""
    pass_ = gu.ForwardPass(model, x, [layer], rectifiers=False)
    return cams(
        pass_, [method], pass_.targets(target), layer, {method: options} if options else None, upsample_to_input=False
    )[method][0]


def pgc(cls, model, x, target, layer, shape):
    """pytorch-grad-cam at the layer's resolution (its resize asked for that size), min-max normalised as it does."""
    with cls(model, target_layers=[gu.get_layer(model, layer)]) as method:
        method.get_target_width_height = lambda tensor: (shape[-1], shape[-2])
        if hasattr(method, "batch_size"):
            method.batch_size = 64
        return torch.from_numpy(method(input_tensor=x, targets=[ClassifierOutputTarget(target)] * len(x)))


def minmax(maps):
    low = maps.flatten(1).min(1).values[:, None, None]
    high = maps.flatten(1).max(1).values[:, None, None]
    return (maps - low) / (high - low + 1e-7)  # pytorch-grad-cam's scale_cam_image


def torchcam_raw(cls, model, x, target, layer, **kwargs):
    with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
        scores = model(x)
        return extractor(class_idx=target, scores=scores, normalized=False)[0].detach()


@pytest.fixture(scope="module")
def own_lite0(lite0):
    """A copy of the session's embedded model: the peers run .backward(), which leaves .grad on the parameters."""
    return copy.deepcopy(lite0)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def loud_resnet(resnet):
    """The same model with logits 1000 times larger: gradients far above pytorch-grad-cam's epsilon in Grad-CAM++."""
    loud = copy.deepcopy(resnet)
    with torch.no_grad():
        loud.fc.weight *= 1000
        loud.fc.bias *= 1000
    return loud


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 96, 96)


@pytest.mark.parametrize("layer", ["layer4", "layer3"])
@pytest.mark.parametrize(
    "method, peer", [("gradcam", torchcam.GradCAM), ("xgradcam", torchcam.XGradCAM), ("layercam", torchcam.LayerCAM)]
)
def test_raw_maps_equal_torchcams(resnet, images, method, peer, layer):
    theirs = torchcam_raw(peer, resnet, images, 3, layer)
    torch.testing.assert_close(
        ours(resnet, images, method, 3, layer), theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max())
    )


def test_the_gradient_variants_equal_the_peers_on_the_embedded_model(own_lite0, cat_dog):
    lite0 = own_lite0
    for method, peer in [
        ("gradcam", torchcam.GradCAM),
        ("xgradcam", torchcam.XGradCAM),
        ("layercam", torchcam.LayerCAM),
    ]:
        theirs = torchcam_raw(peer, lite0, cat_dog, 243, "blocks.5")
        torch.testing.assert_close(
            ours(lite0, cat_dog, method, 243, "blocks.5"), theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max())
        )
    mine = ours(lite0, cat_dog, "hirescam", 243, "blocks.5")
    torch.testing.assert_close(
        minmax(mine), pgc(HiResCAM, lite0, cat_dog, 243, "blocks.5", mine.shape), rtol=1e-4, atol=1e-4
    )


def test_cam_equals_torchcams_on_the_embedded_model(own_lite0, cat_dog):
    lite0 = own_lite0
    theirs = torchcam_raw(torchcam.CAM, lite0, cat_dog, 243, "bn2", fc_layer="classifier")
    torch.testing.assert_close(ours(lite0, cat_dog, "cam", 243, "bn2"), theirs, rtol=1e-4, atol=1e-4)
    grad = ours(lite0, cat_dog, "gradcam", 243, "bn2")  # notebook 04: Grad-CAM there is CAM / (h w), after the ReLU
    torch.testing.assert_close(F.relu(theirs) / 49, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layer", ["layer4", "layer3"])
@pytest.mark.parametrize(
    "method, peer",
    [("hirescam", HiResCAM), ("xgradcam", XGradCAM), ("layercam", LayerCAM), ("gradcam_pp", GradCAMPlusPlus)],
)
def test_normalised_maps_equal_pytorch_grad_cams(loud_resnet, images, method, peer, layer):
    mine = ours(loud_resnet, images, method, 3, layer)
    torch.testing.assert_close(minmax(mine), pgc(peer, loud_resnet, images, 3, layer, mine.shape), rtol=1e-4, atol=1e-4)


def test_gradcam_pp_follows_eq_19_where_pytorch_grad_cams_epsilon_does_not(resnet, images):
    """pytorch-grad-cam adds 1e-6 to Eq. 19's denominator. Here the gradients' squares are about 1e-6, so that changes
    its map
    (with the logits 1000 times larger, above, it does not); Eq. 19 is scale-free in no such way, and we follow it."""
    mine = ours(resnet, images, "gradcam_pp", 3, "layer3")
    assert (minmax(mine) - pgc(GradCAMPlusPlus, resnet, images, 3, "layer3", mine.shape)).abs().max() > 5e-3


def test_hirescam_is_gradcam_in_front_of_global_pooling_and_not_before(resnet, images):
    """In front of global average pooling the gradient is the same at every position (the field notes); at layer3 it is
    not."""
    torch.testing.assert_close(
        ours(resnet, images, "hirescam", 3, "layer4"),
        ours(resnet, images, "gradcam", 3, "layer4"),
        rtol=1e-4,
        atol=1e-6,
    )
    assert not torch.allclose(
        minmax(ours(resnet, images, "hirescam", 3, "layer3")),
        minmax(ours(resnet, images, "gradcam", 3, "layer3")),
        atol=1e-2,
    )


def test_eigencam_is_pytorch_grad_cams_projection_up_to_its_sign_and_the_same_for_every_class(resnet, images):
    pass_ = gu.ForwardPass(resnet, images, ["layer3"], rectifiers=False)
    projection = eigen_cam(pass_.activations["layer3"].detach(), pass_.targets([0, 5]))
    assert torch.equal(projection[0], projection[1])  # class-agnostic
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    theirs = torch.from_numpy(get_2d_projection_with_sign_correction(pass_.activations["layer3"].detach().numpy()))
    torch.testing.assert_close(projection[0], theirs, rtol=1e-3, atol=1e-4 * float(theirs.abs().max()))
    mine = ours(resnet, images, "eigencam", 3, "layer3")
    # No sign correction there: its map is ours or the negative's ReLU
    peer = pgc(EigenCAM, resnet, images, 3, "layer3", mine.shape)
    flipped = minmax(F.relu(-projection[0]))
    for i in range(len(images)):
        assert torch.allclose(minmax(mine)[i], peer[i], atol=1e-3) or torch.allclose(flipped[i], peer[i], atol=1e-3)


class FullResolution(nn.Module):
    """A layer at the input's own resolution: Score-CAM's masks need no interpolation, so the peers' choices of it
    cannot differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_scorecam_equals_both_peers_where_no_interpolation_is_involved():
    model, x = FullResolution().eval(), torch.randn(2, 3, 16, 16)
    mine = ours(model, x, "scorecam", 1, "features", batch_size=4, progress=False)
    theirs = torchcam_raw(torchcam.ScoreCAM, model, x, 1, "features", batch_size=4)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(minmax(mine), pgc(ScoreCAM, model, x, 1, "features", mine.shape), rtol=1e-4, atol=1e-4)


def test_scorecam_reads_every_class_from_the_same_masked_passes(resnet, images):
    calls = []
    handle = resnet.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    try:
        maps = gu.scorecam(resnet, images[:1], [0, 1, 2], layer="layer4", batch_size=100, progress=False)
    finally:
        handle.remove()
    assert maps.shape == (3, 96, 96)
    assert calls == [
        1,
        100,
        100,
        100,
        100,
        100,
        12,
    ]  # the image once, then 512 channels in batches of 100: nothing per class


def test_every_family_member_gives_the_shapes_gradcam_gives(resnet, images):
    x = images[:1]
    for method in CAM_FAMILY:
        layer = "layer1" if method == "scorecam" else None  # 64 channels: 64 masked passes
        function = getattr(gu, method)
        assert function(resnet, x, 3, layer).shape == (96, 96)
        assert function(resnet, x, [3, 4], layer).shape == (2, 96, 96)
        assert function(resnet, images, None, layer).shape == (2, 96, 96)
        assert gu.explain(resnet, x, topk=2, layer=layer, methods=[method])[method].shape == (2, 96, 96)


def test_cam_on_a_head_that_is_not_pooling_then_linear_gets_one_line():
    model = torchvision.models.vgg11(num_classes=10).eval()
    with pytest.raises(
        gu.GradCamError, match="cam needs logits = a linear layer on the global average of 'features'"
    ) as info:
        gu.cam(model, torch.randn(1, 3, 64, 64), 0, layer="features")
    assert "\n" not in str(info.value)
    with pytest.raises(gu.GradCamError, match="batch_size must be a whole number of at least 1, not 0"):
        gu.scorecam(model, torch.randn(1, 3, 64, 64), 0, layer="features", batch_size=0)
