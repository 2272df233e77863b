"""Reliability: no leaked hooks, tensors or memory over hundreds of calls, on the CPU and, where there is one, the GPU;
and a property test of the guided and deconvnet rules on random small conv nets."""

import gc
import os
import warnings

import psutil
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import SAMPLES, assert_unchanged, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcam_utils as gu

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    ),
]
CALLS = 500


def live_tensors():
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on torch.distributed's deprecated reduce_op warns
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for obj in gc.get_objects() if torch.is_tensor(obj))


def rss_mb():
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def gpu_bytes():
    """Bytes held by live CUDA tensors (0 without CUDA): an RSS check does not see GPU memory."""
    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="module", params=DEVICES)
def model_on(request):
    return gu.load_model(device=request.param)


@pytest.mark.parametrize("method", gu.METHODS)
def test_hundreds_of_calls_leak_nothing(model_on, method):
    # A small image keeps 500 calls quick; the model is the full embedded one.
    x = gu.preprocess(SAMPLES / "cat_dog.png", model_on)[..., ::2, ::2][..., :96, :96].contiguous()
    for _ in range(20):  # warm up allocator caches and lazy initialisation
        gu.explain(model_on, x, [243, 282], methods=method)
    before = snapshot(model_on)
    tensors, rss, gpu = live_tensors(), rss_mb(), gpu_bytes()
    for _ in range(CALLS):
        maps = gu.explain(model_on, x, [243, 282], methods=method)
    del maps
    assert hooks(model_on) == 0
    assert live_tensors() <= tensors
    assert rss_mb() - rss < 50
    assert gpu_bytes() <= gpu
    assert_unchanged(model_on, before)


def test_hundreds_of_explorer_updates_leak_nothing():
    import matplotlib

    matplotlib.use("Agg")
    model = gu.load_model(device="cpu")
    explorer = gu.Explorer("gradcam", model, SAMPLES / "cat_dog.png")
    changes = [
        lambda i: setattr(explorer.class_slider, "index", i % 5),
        lambda i: setattr(explorer.layer, "index", i % len(explorer.layers)),
        lambda i: setattr(explorer.method, "value", gu.METHODS[i % 5]),
        lambda i: setattr(explorer.alpha, "value", 0.3 + 0.1 * (i % 5)),
    ]

    def change(i):  # one widget per step: the observers run the update, as when a learner moves a slider
        changes[i % len(changes)](i // len(changes) + 1)

    for i in range(20):
        change(i)
    tensors, rss = live_tensors(), rss_mb()
    titles = set()
    for i in range(CALLS):
        change(i)
        titles.add(explorer._title.get_text())
    assert len(titles) > 20, "the updates did not redraw"
    assert hooks(model) == 0
    assert live_tensors() <= tensors + 5  # the explorer's own current state may hold a handful
    assert rss_mb() - rss < 50


# A random small conv net: each layer is a conv followed by one kind of rectifier (or none).
RECTIFIERS = [
    "none",
    "nn.ReLU",
    "nn.ReLU(inplace)",
    "F.relu",
    "F.relu(inplace)",
    "torch.relu_",
    "Tensor.relu",
    "nn.ReLU6",
    "F.relu6",
    "hardtanh(0,6)",
]


class RandomNet(nn.Module):
    def __init__(self, kinds, width, reference=None):
        super().__init__()
        self.kinds = kinds
        self.reference = reference  # a hand-written autograd Function to use at every rectifier instead
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else width, width, 3, padding=1) for i in range(len(kinds)))
        self.modules_ = nn.ModuleList(
            {"nn.ReLU": nn.ReLU(), "nn.ReLU(inplace)": nn.ReLU(inplace=True), "nn.ReLU6": nn.ReLU6()}.get(
                kind, nn.Identity()
            )
            for kind in kinds
        )
        self.fc = nn.Linear(width, 4)

    def rectify(self, i, x):
        kind = self.kinds[i]
        if kind == "none":
            return x
        if self.reference is not None:
            return self.reference.apply(x, 6.0 if "6" in kind else float("inf"))
        return {
            "F.relu": lambda: F.relu(x),
            "F.relu(inplace)": lambda: F.relu(x, inplace=True),
            "torch.relu_": lambda: torch.relu_(x),
            "Tensor.relu": lambda: x.relu(),
            "F.relu6": lambda: F.relu6(x),
            "hardtanh(0,6)": lambda: F.hardtanh(x, 0.0, 6.0),
        }.get(kind, lambda: self.modules_[i](x))()

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = self.rectify(i, conv(x))
        return self.fc(x.mean(dim=(2, 3)))


class GuidedReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, upper):
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.where((x > 0) & (x < ctx.upper) & (g > 0), g, torch.zeros_like(g)), None


class DeconvnetReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, upper):
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, g):
        return torch.where(g > 0, g, torch.zeros_like(g)), None


def reference_map(net, x, target, function):
    reference = RandomNet(net.kinds, net.fc.in_features, reference=function)
    reference.load_state_dict(net.state_dict())
    x = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(reference(x)[0, target], x)
    return g[0]


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(RECTIFIERS), min_size=1, max_size=4),
    width=st.integers(2, 6),
    seed=st.integers(0, 2**16),
    target=st.integers(0, 3),
    scale=st.sampled_from([0.5, 3.0, 10.0]),  # large inputs push values past ReLU6's upper bound
)
def test_guided_and_deconvnet_rules_match_a_hand_written_reference(kinds, width, seed, target, scale):
    torch.manual_seed(seed)
    net = RandomNet(kinds, width).eval()
    x = torch.randn(1, 3, 6, 6) * scale
    before = snapshot(net)
    torch.testing.assert_close(
        gu.guided_backprop(net, x, target), reference_map(net, x, target, GuidedReference), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        gu.deconvnet(net, x, target), reference_map(net, x, target, DeconvnetReference), rtol=1e-5, atol=1e-6
    )
    assert_unchanged(net, before)
