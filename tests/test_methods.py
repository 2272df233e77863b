"""The five methods: shapes, the fast path against the plain loop, and the promises to the caller's model."""

import warnings
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from conftest import assert_maps_close, assert_unchanged, snapshot

import gradcam_utils as gu

CLASSES = [243, 242, 282]


def every_method(model, x, target, layer=None):
    return {
        "vanilla_backprop": gu.vanilla_backprop(model, x, target),
        "deconvnet": gu.deconvnet(model, x, target),
        "guided_backprop": gu.guided_backprop(model, x, target),
        "gradcam": gu.gradcam(model, x, target, layer=layer),
        "guided_gradcam": gu.guided_gradcam(model, x, target, layer=layer),
    }


def test_shapes_for_one_class_many_classes_and_a_batch(lite0, cat_dog):
    for method, maps in every_method(lite0, cat_dog, CLASSES).items():
        assert maps.shape == ((3, 3, 224, 224) if method != "gradcam" else (3, 224, 224))
        assert maps.dtype == torch.float32 and torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert gu.gradcam(lite0, cat_dog, 243).shape == (224, 224)
    assert gu.guided_backprop(lite0, cat_dog[0], "bull mastiff").shape == (3, 224, 224)
    batch = torch.cat([cat_dog, cat_dog.flip(-1)])
    assert gu.gradcam(lite0, batch, CLASSES).shape == (2, 3, 224, 224)
    assert gu.deconvnet(lite0, batch, 243).shape == (2, 3, 224, 224)


def test_one_call_for_k_classes_equals_k_calls_of_one_class(lite0, cat_dog):
    together = gu.explain(lite0, cat_dog, CLASSES, layer="blocks.5")
    for i, target in enumerate(CLASSES):
        alone = every_method(lite0, cat_dog, target, layer="blocks.5")
        for method in gu.METHODS:
            torch.testing.assert_close(together[method][i], alone[method], rtol=1e-5, atol=1e-7)
    assert together["targets"].tolist() == CLASSES


@pytest.mark.parametrize("rule", ["vanilla", "deconvnet", "guided"])
def test_the_k_classes_in_one_batched_backward_pass_equal_one_pass_each(rule):
    # A GPU takes the batched pass for one image (ForwardPass.pixel_map); here both run on the CPU.
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    pass_ = gu.ForwardPass(model, torch.randn(1, 3, 64, 64))
    targets = pass_.targets(topk=3)
    one_each = pass_.gradients(targets, pass_.input, rule)
    batched = pass_.gradients(targets, pass_.input, gu.Rule(rule), batched=True)
    assert one_each.abs().amax() > 0 and not torch.equal(one_each[0], one_each[1])
    torch.testing.assert_close(batched, one_each, rtol=1e-5, atol=1e-7)


def test_a_pass_read_for_the_last_time_frees_its_graph_after_the_last_class():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    kept = gu.ForwardPass(model, x)
    freed = gu.ForwardPass(model, x)
    targets = kept.targets(topk=2)
    torch.testing.assert_close(freed.pixel_map(targets, "vanilla", last_use=True), kept.pixel_map(targets, "vanilla"))
    kept.pixel_map(targets, "guided")  # still readable
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        freed.pixel_map(targets, "guided")


def test_a_batch_equals_a_loop_over_its_images(lite0, cat_dog):
    batch = torch.cat([cat_dog, cat_dog.flip(-1), cat_dog * 0.5])
    together = gu.explain(lite0, batch, topk=2)
    for b in range(3):
        alone = gu.explain(lite0, batch[b : b + 1], topk=2)
        assert together["targets"][b].tolist() == alone["targets"].tolist()
        for method in gu.METHODS:
            assert_maps_close(together[method][b], alone[method], rtol=1e-3)  # batched convolutions round differently


def test_gradcam_at_the_layer_resolution(lite0, cat_dog):
    forward = gu.ForwardPass(lite0, cat_dog, layers=["blocks.5"], rectifiers=False)
    small = forward.cam(forward.targets(243), "blocks.5", upsample=False)
    assert small.shape == (1, 1, 7, 7)
    upsampled = F.interpolate(small, size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled[0, 0], gu.gradcam(lite0, cat_dog, 243, layer="blocks.5"))


@pytest.mark.parametrize(
    "arch, layer", [("vgg11", "features.3"), ("resnet18", "layer3"), ("efficientnet_lite0", "blocks.5")]
)
def test_gradcam_at_a_given_layer_records_the_graph_from_that_layer_only(arch, layer):
    # vgg11's features.3 is a conv followed by an in-place ReLU: the kept activations must survive it.
    torch.manual_seed(0)
    model = gu.load_model(arch, weights=None, device="cpu")
    x = torch.randn(1, 3, 128, 128)
    first, last = next(m for m in model.modules() if isinstance(m, nn.Conv2d)), gu.get_layer(model, layer)
    recorded = {}
    for name, module in (("below", first), ("layer", last)):
        module.register_forward_hook(
            lambda module, inputs, output, name=name: recorded.setdefault(name, []).append(output.requires_grad)
        )
    cams = gu.gradcam(model, x, CLASSES, layer=layer)
    assert recorded == {"below": [False], "layer": [False]}, "Grad-CAM alone recorded the graph below its layer"
    full = gu.ForwardPass(model, x, layers=[layer], rectifiers=False)  # recorded from the input
    assert recorded == {"below": [False, True], "layer": [False, True]}
    assert_maps_close(cams, full.cam(full.targets(CLASSES), layer)[:, 0])
    for hooks in (first._forward_hooks, last._forward_hooks):
        hooks.clear()
    with pytest.raises(gu.GradCamError, match="from_input=True"):
        gu.ForwardPass(model, x, layers=[layer], rectifiers=False, from_input=False).pixel_map(
            torch.tensor([[0]]), "vanilla"
        )


@pytest.mark.parametrize(
    "arch, passes",
    # densenet's last layer (features.norm5) is changed in place after it runs, by F.relu(inplace=True): two passes.
    [
        ("resnet18", 1),
        ("vgg11", 1),
        ("squeezenet1_1", 1),
        ("densenet121", 2),
        ("mobilenet_v2", 1),
        ("efficientnet_lite0", 1),
    ],
)
def test_without_a_layer_gradcam_finds_default_layer_in_its_own_forward_pass(arch, passes, monkeypatch):
    torch.manual_seed(0)
    model = gu.load_model(arch, weights=None, device="cpu")
    x = torch.randn(1, 3, 160, 160)
    layer = gu.default_layer(model, x)
    expected = gu.gradcam(model, x, layer=layer)
    forwards = []
    monkeypatch.setattr(type(model), "forward", counting(type(model).forward, forwards))
    assert_maps_close(gu.gradcam(model, x), expected)
    assert len(forwards) == passes
    assert gu.ForwardPass(model, x, find_default_layer=True).default_layer == layer


def test_finding_the_default_layer_keeps_few_activations_alive():
    # Ten top-level layers in a row whose backward keeps nothing: each output, once a later layer outranks it,
    # must be let go during the forward pass, not held to the end (a whole network's activations on a big batch).
    class Shift(nn.Module):
        def forward(self, x):
            return x + 1.0

    shifts = [Shift() for _ in range(10)]
    outputs, alive = [], []
    for shift in shifts:
        shift.register_forward_hook(lambda module, inputs, output: outputs.append(weakref.ref(output)))

    class Head(nn.Module):
        def forward(self, x):
            alive.append(sum(ref() is not None for ref in outputs))
            return x.mean(dim=(2, 3))

    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), *shifts, Head())
    x = torch.randn(1, 3, 16, 16)
    forward = gu.ForwardPass(model, x, find_default_layer=True)
    assert alive == [1], f"{alive[0]} of the 10 layers' outputs were still held when the last one finished"
    assert forward.default_layer == "10" == gu.default_layer(model, x)
    assert_maps_close(gu.gradcam(model, x, 0), gu.gradcam(model, x, 0, layer="10"))


def test_a_model_that_runs_a_layer_twice_gets_the_same_default_layer():
    class CallsTwice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3, 10)

        def forward(self, x):
            return self.head(self.a(self.b(self.a(x))).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model, x = CallsTwice(), torch.randn(1, 3, 16, 16)
    assert gu.default_layer(model, x) == "b"
    assert_maps_close(gu.gradcam(model, x, 0), gu.gradcam(model, x, 0, layer="b"))


def counting(forward, calls):
    def forward_counted(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    return forward_counted


def test_the_same_call_twice_gives_identical_maps(lite0, cat_dog):
    first, second = gu.explain(lite0, cat_dog, CLASSES), gu.explain(lite0, cat_dog, CLASSES)
    for method in gu.METHODS:
        assert torch.equal(first[method], second[method])


class Toy(nn.Module):
    """conv -> ReLU(inplace) -> F.relu6 -> pool -> linear, plus a conv the forward never uses."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.unused = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            self.fc.weight[0] = 0
            self.fc.bias[0] = 0

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu6(self.relu(self.conv(x))), 1).flatten(1))


def test_a_class_the_model_ignores_gives_all_zero_maps_and_no_nan():
    torch.manual_seed(0)
    model, x = Toy(), torch.randn(1, 3, 8, 8)
    maps = gu.explain(model, x, 0, layer="conv")
    for method in gu.METHODS:
        assert torch.count_nonzero(maps[method]) == 0, method
        picture = gu.overlay(torch.zeros(8, 8, 3).numpy(), maps[method], 0.5)
        assert not torch.isnan(torch.as_tensor(picture)).any()
    assert (gu.normalize(maps["gradcam"]) == 0).all()


@pytest.mark.parametrize("method", gu.METHODS)
def test_the_model_is_left_exactly_as_found(lite0, cat_dog, method):
    before = snapshot(lite0)
    gu.explain(lite0, cat_dog, CLASSES, methods=method)
    assert_unchanged(lite0, before)


@pytest.mark.parametrize("method", gu.METHODS)
def test_the_model_is_left_as_found_after_an_error(method):
    model = Toy().train()
    model.relu.train(False)  # a mixed state must come back mixed
    before = snapshot(model)
    for bad in ({"layer": "fc"}, {"layer": "unused"}, {"target": 9}):
        with pytest.raises(gu.GradCamError):
            gu.explain(
                model, torch.randn(1, 3, 8, 8), **{"layer": "conv", "target": 1, **bad}, methods=["gradcam", method]
            )
        assert_unchanged(model, before)


def test_a_model_in_train_mode_is_explained_in_eval_mode_and_given_back_in_train_mode(lite0, cat_dog):
    lite0.train()
    try:
        before = snapshot(lite0)
        maps = gu.gradcam(lite0, cat_dog, 243)
        assert_unchanged(lite0, before)  # includes BatchNorm's running statistics
        assert lite0.training
    finally:
        lite0.eval()
    torch.testing.assert_close(maps, gu.gradcam(lite0, cat_dog, 243))


def test_no_grad_is_fine_and_inference_mode_is_refused_clearly(lite0, cat_dog):
    expected = gu.guided_backprop(lite0, cat_dog, 243)
    with torch.no_grad():
        torch.testing.assert_close(gu.guided_backprop(lite0, cat_dog, 243), expected)
    with torch.inference_mode(), pytest.raises(gu.GradCamError, match="inside torch.inference_mode"):
        gu.gradcam(lite0, cat_dog, 243)


def test_activations_that_are_not_rectifiers_are_named_in_a_warning():
    model = gu.load_model("efficientnet_b0", weights=None, device="cpu")
    with pytest.warns(UserWarning, match="the model uses silu, which are not rectifiers"):
        gu.guided_backprop(model, torch.randn(1, 3, 64, 64), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gu.vanilla_backprop(model, torch.randn(1, 3, 64, 64), 1)  # the plain gradient is exact: nothing to warn about


def test_a_warning_repeated_in_a_loop_is_shown_once_as_python_does():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.SiLU(), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    ).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: once per place in the code
        for _ in range(3):
            gu.guided_backprop(model, torch.randn(1, 3, 16, 16), 1)
    assert sum("not rectifiers" in str(w.message) for w in caught) == 1


def test_bad_tensors_targets_and_layers_get_one_line_errors(lite0, cat_dog):
    no_conv = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    cases = [
        (lambda: gu.gradcam(lite0, cat_dog[0, 0]), r"x has shape \[224, 224\], but the model wants \[B, 3, H, W\]"),
        (lambda: gu.gradcam(lite0, cat_dog[:, :1]), r"x has shape \[1, 1, 224, 224\]"),
        (lambda: gu.gradcam(lite0, cat_dog.numpy()), "must be an image tensor"),
        (lambda: gu.gradcam(lite0, cat_dog * float("nan")), "contains NaN"),
        (
            lambda: gu.gradcam("efficientnet_lite0", cat_dog),
            r"model must be a torch.nn.Module, not str; make one with load_model\('efficientnet_lite0'\)",
        ),
        (lambda: gu.guided_backprop(lite0, cat_dog[:0]), r"x has shape \[0, 3, 224, 224\]: an empty batch"),
        (lambda: gu.vanilla_backprop(lite0, cat_dog, -1), "out of range"),
        (lambda: gu.vanilla_backprop(lite0, cat_dog, 1000), "out of range"),
        (lambda: gu.explain(lite0, cat_dog, topk=1001), "topk must be an integer from 1 to 1000"),
        (lambda: gu.explain(lite0, cat_dog, target=[]), "empty"),
        (
            lambda: gu.gradcam(lite0, cat_dog, target=1.5),
            "a class must be an int index or an ImageNet class name, not 1.5",
        ),
        (lambda: gu.gradcam(lite0, cat_dog, layer="blocks.9"), "no layer named 'blocks.9'"),
        (
            lambda: gu.gradcam(lite0, cat_dog, layer="classifier"),
            r"outputs a tensor of shape \[1, 1000\], not feature maps",
        ),
        (lambda: gu.gradcam(Toy(), torch.randn(1, 3, 8, 8), layer="unused"), "never reached"),
        (lambda: gu.gradcam(no_conv, torch.randn(1, 3, 8, 8)), "no layer with a spatial"),
        (lambda: gu.gradcam(lite0, torch.zeros(1, 3, 2, 2)), "EfficientNet has no layer with a spatial"),
        (
            lambda: gu.vanilla_backprop(no_conv, torch.zeros(1, 3, 16, 16)),
            r"the model failed on images of shape \[3, 16, 16\]",
        ),
        (
            lambda: gu.smoothgrad(no_conv, torch.zeros(1, 3, 16, 16), 0, samples=4),
            r"the model failed on images of shape \[3, 16, 16\]",
        ),
        (lambda: gu.explain(lite0, cat_dog, methods="saliency"), "unknown method 'saliency'"),
    ]
    for call, message in cases:
        with pytest.raises(gu.GradCamError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_topk_zero_is_an_error_not_top_1(lite0, cat_dog):
    with pytest.raises(gu.GradCamError, match="topk must be an integer from 1 to 1000"):
        gu.explain(lite0, cat_dog, topk=0)
