"""The recording core: one forward pass of a model, kept so that any number of explanations can be read from it.

- Every rectifier call (ReLU, ReLU6; nn.Module or functional) goes through `Rectifier`, whose backward rule
  is read when each backward pass runs: one forward pass serves the plain gradient, deconvnet and guided
  backpropagation (Springenberg et al. 2015, Fig. 1).
- Forward hooks keep the activations of the layers that the Grad-CAM family weighs.
- `Recording.gradients` takes d logit_target / d (input or a kept layer) for any number of classes.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .errors import GradCamError, describe
from .layers import choose_layers, get_layer, is_spatial, last_layer, layer_candidates
from .models import as_batch, check_topk, class_index, run_model
from .vit import Reshape, default_reshape

Target = (
    Any  # a class: an int index, an ImageNet name or a 0-d tensor; or a list of them; or None (the predicted class)
)


class Rule(enum.Enum):
    """What a rectifier passes back for the gradient g arriving from above (Springenberg et al. 2015, Fig. 1)."""

    VANILLA = "vanilla"  # g * [0 < x < upper]           the true derivative
    DECONVNET = "deconvnet"  # max(g, 0)                 ignores the forward input
    GUIDED = "guided"  # max(g, 0) * [0 < x < upper]     both masks


def as_rule(rule: Rule | str) -> Rule:
    """A Rule from itself or its name ("vanilla", "deconvnet", "guided")."""
    try:
        return Rule(rule)
    except ValueError:
        raise GradCamError(f"unknown rule {rule!r}; choose one of: {', '.join(r.value for r in Rule)}") from None


class BackwardRule:
    """The rule rectifiers apply on the way back, read when each backward pass runs.

    The autograd graph keeps a reference to this small object only: a reference from the
    graph back to the Recording (which holds the graph) would be a cycle that Python's
    garbage collector cannot see through, and every call would leak its whole graph.
    """

    def __init__(self) -> None:
        self.rule = Rule.VANILLA


class Rectifier(torch.autograd.Function):
    """min(max(x, 0), upper), with the backward `Rule` chosen when the backward pass runs."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float, inplace: bool, rule: BackwardRule) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
        y = x.clamp_(0, upper) if inplace else x.clamp(0, upper)
        # Keep the output, as torch's own ReLU does: the next layer keeps it anyway, so it costs
        # no memory, and 0 < y < upper exactly where 0 < x < upper.
        ctx.save_for_backward(y)
        ctx.upper, ctx.rule = upper, rule
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (y,) = ctx.saved_tensors
        if ctx.rule.rule is Rule.DECONVNET:
            return g.clamp(min=0), None, None, None
        # g * [0 < y < upper], by the kernels torch's own ReLU and ReLU6 use for their backward.
        if ctx.upper == math.inf:
            g = torch.ops.aten.threshold_backward(g, y, 0)
        else:
            g = torch.ops.aten.hardtanh_backward(g, y, 0.0, ctx.upper)
        if ctx.rule.rule is Rule.GUIDED:
            g.clamp_(min=0)  # in place: g is a fresh tensor here, and max(g, 0) * mask = max(g * mask, 0)
        return g, None, None, None


_RELU = {torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_NOT_RECTIFIERS = {F.silu, F.gelu, F.hardswish, F.mish, F.elu, F.selu, F.celu, F.leaky_relu, F.softplus, F.prelu}
_SIGNATURES = {f: inspect.signature(f) for f in (F.relu, F.relu6, F.hardtanh)}


def _as_rectifier(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[torch.Tensor, float, bool] | None:
    """(x, upper, inplace) when func(*args, **kwargs) is a ReLU or ReLU6, else None."""
    if func in _RELU_INPLACE:
        return args[0], math.inf, True
    if func in _RELU:
        return args[0], math.inf, False
    if func not in _SIGNATURES:
        return None
    call = _SIGNATURES[func].bind(*args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    if func is F.relu:
        return a["input"], math.inf, a["inplace"]
    if func is F.relu6:
        return a["input"], 6.0, a["inplace"]
    if a["min_val"] == 0 and a["max_val"] == 6:  # nn.ReLU6 is hardtanh(x, 0, 6)
        return a["input"], 6.0, a["inplace"]
    return None


class _RectifierMode(TorchFunctionMode):
    """Sends every ReLU/ReLU6 call of the forward pass, nn.Module or functional, through `Rectifier`."""

    def __init__(self, rule: BackwardRule) -> None:
        super().__init__()
        self.rule = rule
        self.not_rectifiers: set[str] = set()

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        rectifier = _as_rectifier(func, args, kwargs)
        if rectifier is None:
            if func in _NOT_RECTIFIERS:
                self.not_rectifiers.add(func.__name__)
            return func(*args, **kwargs)
        x, upper, inplace = rectifier
        return Rectifier.apply(x, upper, inplace, self.rule)


_CUDA_BACKWARD_SEEN: set[torch.device] = set()


@contextlib.contextmanager
def _first_cuda_backward(device: torch.device) -> Iterator[None]:
    """Silence torch's harmless "no current CUDA context" warning, which its backward thread gives once per process on
    its first cuBLAS call. Only around the first backward pass on each GPU: catch_warnings resets which warnings were
    already shown, so around every pass it would repeat the caller's own once-per-place warnings in a loop."""
    if device.type != "cuda" or device in _CUDA_BACKWARD_SEEN:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempting to run cuBLAS, but there was no current CUDA context")
        yield
    _CUDA_BACKWARD_SEEN.add(device)


def is_single(target: Target) -> bool:
    """True for one class (an int, a name, a 0-d tensor) or None (the predicted class); False for a list of classes."""
    return (
        target is None or isinstance(target, (int, str, np.integer)) or (torch.is_tensor(target) and target.dim() == 0)
    )


class Recording:
    """One forward pass of `model` on `x`, kept so that any number of explanations can be read from it.

    `layers`: names of the layers whose activations the Grad-CAM family will need.
    `rectifiers`: route ReLU/ReLU6 through `Rectifier`, as deconvnet and guided backprop need.
    `from_input`: record the autograd graph from the input, as the pixel maps need. With False, the
    pass runs without gradients up to the first of `layers` that it reaches, and records from there on:
    that is all Grad-CAM needs, and the layers below then cost no more than in a plain forward pass.
    With neither, the pass records nothing: its logits only tell the target classes (for the methods that
    run passes of their own, SmoothGrad and Integrated Gradients), and the model runs on x only when they
    are read. Classes given by the caller do not need them: their range is checked by `check_classes`
    against the first pass on points near x, and x costs no forward pass of its own.
    `reshape`: a function from a layer's tokens [B, T, D] to feature maps [B, C, h, w] (default: drop the
    class and register tokens of a torchvision or timm ViT, see vit.py); the activations are kept as tokens.
    `find_default_layer`: also find default_layer(model) on the way, as `self.default_layer`, and keep
    its activations (unless something changed them in place later): Grad-CAM with no layer given
    then usually costs no second forward pass.
    The model is left as it was found: no hooks remain, every train/eval flag is restored.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        layers: Sequence[str] = (),
        rectifiers: bool = True,
        find_default_layer: bool = False,
        from_input: bool = True,
        reshape: Reshape | None = None,
    ) -> None:
        if torch.is_inference_mode_enabled():
            raise GradCamError("gradients cannot be computed inside torch.inference_mode(); call this outside it")
        self.model = model
        self.reshape = reshape or default_reshape(model)
        self.input = as_batch(model, x).clone().requires_grad_(from_input)
        self.rectifiers = rectifiers
        self.rule = BackwardRule()
        self.not_rectifiers: set[str] = set()
        self.activations: dict[str, torch.Tensor] = {}
        self.spatial: list[str] = []  # the candidates for the default layer whose outputs were feature maps, in order
        self.unchecked_class: int | None = (
            None  # the largest class given to targets() before the number of classes was known
        )
        self.default_layer: str | None = None
        self._logits: torch.Tensor | None = None
        if not (from_input or layers or find_default_layer):
            return
        candidates = layer_candidates(model) if find_default_layer else {}
        maybe_default: dict[str, tuple[torch.Tensor, int]] = {}  # the candidates that may still be the default layer
        handles = [
            module.register_forward_hook(self._candidate_keeper(name, maybe_default))
            for name, module in candidates.items()
        ]
        handles += [get_layer(model, name).register_forward_hook(self._keeper(name)) for name in layers]
        try:
            with torch.set_grad_enabled(from_input):  # else _keeper turns gradients on
                if rectifiers:
                    mode = _RectifierMode(self.rule)
                    with mode:
                        self._logits = run_model(model, self.input)
                    self.not_rectifiers = mode.not_rectifiers
                else:
                    self._logits = run_model(model, self.input)
        finally:
            for handle in handles:
                handle.remove()
        missed = [name for name in layers if name not in self.activations]
        if missed:
            raise GradCamError(
                f"layer {missed[0]!r} is never reached by the model's forward pass; pick one from list_layers(model)"
            )
        if find_default_layer:
            self.default_layer = layer = last_layer(model, choose_layers(candidates, self.spatial))
            if layer in maybe_default:
                activations, version = maybe_default[layer]
                if activations._version == version:
                    self.activations.setdefault(layer, activations)

    def _keeper(self, name: str) -> Callable[..., torch.Tensor]:
        def keep(module: torch.nn.Module, inputs: Any, output: Any) -> torch.Tensor:
            if not (
                torch.is_tensor(output) and (output.dim() == 4 or (output.dim() == 3 and self.reshape is not None))
            ):
                raise GradCamError(
                    f"layer {name!r} outputs {describe(output)}, not feature maps [B, C, H, W]; {_remedy(output)}"
                )
            if not torch.is_grad_enabled():  # the first of the layers in a pass with from_input=False
                torch.set_grad_enabled(True)  # until the pass ends: the graph starts here
                output = output.detach().requires_grad_()
            self.activations[name] = output
            # Later in-place ops (a ReLU(inplace=True) after a conv) must not overwrite the activations kept here.
            return output.clone()

        return keep

    def _candidate_keeper(self, name: str, maybe_default: dict[str, tuple[torch.Tensor, int]]) -> Callable[..., None]:
        """Keeps the output of a layer that may turn out to be the default one, and lets go of those that no longer can.

        The default is the last of the top-level layers, or of the trunk's children (see choose_layers):
        so a top-level layer outranks every layer before it except its own children, and a child its
        earlier siblings. Unlike _keeper, no clone: a clone of every layer's output would double the
        memory the backward pass keeps. The version counter tells whether an in-place op changed it later.
        """
        parent = name.rpartition(".")[0]

        def keep(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if not is_spatial(output):
                return
            if name not in self.spatial:
                self.spatial.append(name)
            for other in list(maybe_default):
                other_parent = other.rpartition(".")[0]
                if other_parent == parent if parent else other_parent != name:
                    del maybe_default[other]
            maybe_default[name] = output, output._version

        return keep

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:  # a pass that records nothing: the model runs on x when the logits are first read
            with torch.no_grad():
                self._logits = run_model(self.model, self.input)
        return self._logits

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.detach().softmax(dim=1)

    def targets(self, target: Target = None, topk: int | None = None) -> torch.Tensor:
        """Class indices [k, B]: the given class(es) for every image, or each image's top-k (top-1 when both are
        None)."""
        if target is None:
            return (
                self.logits.detach()
                .topk(check_topk(1 if topk is None else topk, self.logits.shape[1]), dim=1)
                .indices.T
            )
        if topk is not None:
            raise GradCamError("give either target or topk, not both")
        # 1.5: class_index says why
        classes = [target] if is_single(target) or not hasattr(target, "__iter__") else list(target)
        if not classes:
            raise GradCamError("target is an empty list; give at least one class")
        known = self._logits.shape[1] if self._logits is not None else None
        indices = [class_index(c, known) for c in classes]
        self.unchecked_class = None if known else max(indices)
        return torch.tensor(indices, device=self.input.device)[:, None].expand(-1, len(self.input))

    def check_classes(self, num_classes: int) -> None:
        """The range check that targets() left undone, given the number of classes read from another pass of the
        model."""
        if self.unchecked_class is not None:
            class_index(self.unchecked_class, num_classes)

    def gradients(
        self,
        targets: torch.Tensor,
        wrt: torch.Tensor,
        rule: Rule | str = Rule.VANILLA,
        batched: bool = False,
        last_use: bool = False,
    ) -> torch.Tensor:
        """d logit_target / d wrt for each row of targets [k, B], with `rule` at every rectifier: [k, *wrt.shape].

        `wrt`: the input, or the activations of a kept layer. `batched`: all k rows in one backward pass (torch's
        vmap). That is faster through the small head above a late layer, and on a GPU, where a small backward pass
        is bound by the cost of launching its kernels. On a CPU all the way down to the pixels it is slower
        (convolution backward under vmap runs one row at a time): there, one backward pass per row.
        `last_use`: no backward pass will follow, so the last one frees the graph as it goes. That lowers
        the peak memory, and on a CPU it runs about a third faster (freed buffers are reused, not newly mapped).
        """
        self.rule.rule = as_rule(rule)
        logits = self.logits
        one_hot = torch.zeros((len(targets), *logits.shape), dtype=logits.dtype, device=logits.device)
        one_hot.scatter_(2, targets[:, :, None], 1.0)
        with _first_cuda_backward(logits.device):
            if batched:
                return torch.autograd.grad(logits, wrt, one_hot, retain_graph=not last_use, is_grads_batched=True)[0]
            rows = len(one_hot)
            return torch.stack(
                [
                    torch.autograd.grad(logits, wrt, row, retain_graph=not (last_use and i == rows - 1))[0]
                    for i, row in enumerate(one_hot)
                ]
            )

    def pixel_map(self, targets: torch.Tensor, rule: Rule | str, last_use: bool = False) -> torch.Tensor:
        """d logit / d input with `rule` at every rectifier: [k, B, 3, H, W].
        `last_use`: free the graph on the way (see gradients); no map can be read from this pass after it."""
        rule = as_rule(rule)
        if not self.input.requires_grad:
            raise GradCamError("the pixel maps need a ForwardPass recorded with from_input=True")
        if rule is not Rule.VANILLA and not self.rectifiers:
            raise GradCamError(f"the {rule.value} rule needs a ForwardPass recorded with rectifiers=True")
        if rule is not Rule.VANILLA and self.not_rectifiers:
            warnings.warn(
                f"the model uses {', '.join(sorted(self.not_rectifiers))}, which are not rectifiers: the {rule.value} "
                "rule "
                "applies only at ReLU/ReLU6, so through those activations this map is a plain gradient",
                stacklevel=4,
            )
        # On a GPU a pass over one image is bound by kernel launches: one batched backward pass serves the k classes
        # (measured on an H100: resnet50's five maps for 3 classes in 8.5 forward passes instead of 10.8). Over
        # many points (SmoothGrad, Integrated Gradients) the GPU is busy already, and vmap only adds work.
        batched = self.input.is_cuda and len(targets) > 1 and len(self.input) == 1
        return self.gradients(targets, self.input, rule, batched, last_use)


def _remedy(output: Any) -> str:
    if torch.is_tensor(output) and output.dim() == 3:
        return "for tokens, pass reshape=a function from them to [B, C, h, w]"
    return "pick one from list_layers(model)"
