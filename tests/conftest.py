import copy
from pathlib import Path

import pytest
import torch

import gradcam_utils as gu

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="session")
def lite0():
    """The embedded EfficientNet-Lite0 with its real ImageNet weights, on the CPU."""
    return gu.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def cat_dog(lite0):
    return gu.preprocess(SAMPLES / "cat_dog.png", lite0)


def snapshot(model):
    """Everything a method could change about a model, for an exact before/after comparison."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(name, type(m), id(m)) for name, m in model.named_modules()],
        "parameters": [(name, id(p), p.requires_grad) for name, p in model.named_parameters()],
        "flags": [(m.training, getattr(m, "inplace", None)) for m in model.modules()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
        ),
        "grads": [p.grad for p in model.parameters()],
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after["modules"] == before["modules"]
    assert after["parameters"] == before["parameters"]
    assert after["flags"] == before["flags"]
    assert after["hooks"] == before["hooks"] == 0
    assert all(g is None for g in after["grads"])
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key


def assert_maps_close(ours, theirs, rtol=1e-4):
    """Equal up to float rounding, relative to the map's own scale (random-weight maps can be tiny or huge)."""
    theirs = theirs.to(ours.dtype)
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().item()
    assert scale > 0, "the reference map is all zeros: the check would prove nothing"
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * scale)


def copy_of(model):
    return copy.deepcopy(model)
