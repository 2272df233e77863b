"""The five gradient-based explanations, and the hooks behind them.

All five start from one forward pass, recorded by `ForwardPass`:

- vanilla backpropagation, deconvnet and guided backpropagation are all
  d logit_c / d input; they differ only in the rule applied at each rectifier
  (ReLU, ReLU6) on the way back. While the forward pass runs, every rectifier
  call, module or functional, goes through `Rectifier`, whose backward rule is
  read when the backward pass runs. One forward serves all three.
- Grad-CAM needs the activations A of one layer (kept by a forward hook) and
  d logit_c / d A.

The k target classes share the forward pass. Grad-CAM's k backward passes, from the
logits down to one layer, run as one batched pass; the pixel maps take one backward pass
per class on a CPU, one batched pass on a GPU (see `ForwardPass._gradients`).

Gradient x Input is the vanilla map times x. SmoothGrad and Integrated Gradients read the same
pixel maps from forward passes over many points near x: noise_and_paths.py. Grad-CAM and the
methods that came after it weigh one layer's activations: cam_family.py.
"""

import inspect
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import cam_family, noise_and_paths
from .models import GradCamError, as_batch, check_topk, choose_layers, class_index, default_layer, get_layer, is_spatial, last_layer, layer_candidates, run_model
from .vit import default_reshape

METHODS = ("vanilla_backprop", "deconvnet", "guided_backprop", "gradcam", "guided_gradcam")  # the series' first five
MANY_POINTS = ("smoothgrad", "integrated_gradients")  # a forward pass over many points near x, not x alone
ALL_METHODS = METHODS + ("input_x_gradient",) + MANY_POINTS + cam_family.CAM_FAMILY
LAYER_METHODS = ("gradcam", "guided_gradcam") + cam_family.CAM_FAMILY  # maps of one layer's activations: they take a layer
PIXEL_RULES = {"vanilla_backprop": "vanilla", "deconvnet": "deconvnet", "guided_backprop": "guided", "input_x_gradient": "vanilla"}


class BackwardRule:
    """The rule rectifiers apply on the way back, read when each backward pass runs.

    The autograd graph keeps a reference to this small object only: a reference from the
    graph back to the ForwardPass (which holds the graph) would be a cycle that Python's
    garbage collector cannot see through, and every call would leak its whole graph.
    """

    def __init__(self):
        self.name = "vanilla"


class Rectifier(torch.autograd.Function):
    """min(max(x, 0), upper), with the backward rule chosen when the backward pass runs.

    The rules, for the gradient g arriving from above (Springenberg et al. 2015, Fig. 1):
      vanilla:   g * [0 < x < upper]           the true derivative
      deconvnet: max(g, 0)                     ignores the forward input
      guided:    max(g, 0) * [0 < x < upper]   both masks
    """

    @staticmethod
    def forward(ctx, x, upper, inplace, rule):
        if inplace:
            ctx.mark_dirty(x)
        y = x.clamp_(0, upper) if inplace else x.clamp(0, upper)
        # Keep the output, as torch's own ReLU does: the next layer keeps it anyway, so it costs
        # no memory, and 0 < y < upper exactly where 0 < x < upper.
        ctx.save_for_backward(y)
        ctx.upper, ctx.rule = upper, rule
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if ctx.rule.name == "deconvnet":
            return g.clamp(min=0), None, None, None
        # g * [0 < y < upper], by the kernels torch's own ReLU and ReLU6 use for their backward.
        if ctx.upper == math.inf:
            g = torch.ops.aten.threshold_backward(g, y, 0)
        else:
            g = torch.ops.aten.hardtanh_backward(g, y, 0.0, ctx.upper)
        if ctx.rule.name == "guided":
            g.clamp_(min=0)  # in place: g is a fresh tensor here, and max(g, 0) * mask = max(g * mask, 0)
        return g, None, None, None


# torch warns once, harmlessly, when its backward thread first calls cuBLAS on a GPU: not the caller's concern.
# A filter set once here, not around each backward pass: catch_warnings would reset which warnings were already shown.
warnings.filterwarnings("ignore", message="Attempting to run cuBLAS, but there was no current CUDA context")

_RELU = {torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_NOT_RECTIFIERS = {F.silu, F.gelu, F.hardswish, F.mish, F.elu, F.selu, F.celu, F.leaky_relu, F.softplus, F.prelu}
_SIGNATURES = {f: inspect.signature(f) for f in (F.relu, F.relu6, F.hardtanh)}


def _as_rectifier(func, args, kwargs):
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

    def __init__(self, rule):
        super().__init__()
        self.rule = rule
        self.not_rectifiers = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rectifier = _as_rectifier(func, args, kwargs)
        if rectifier is None:
            if func in _NOT_RECTIFIERS:
                self.not_rectifiers.add(func.__name__)
            return func(*args, **kwargs)
        x, upper, inplace = rectifier
        return Rectifier.apply(x, upper, inplace, self.rule)


class ForwardPass:
    """One forward pass of `model` on `x`, kept so that any number of explanations can be read from it.

    `layers`: names of the layers whose activations Grad-CAM will need.
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

    def __init__(self, model, x, layers=(), rectifiers=True, find_default_layer=False, from_input=True, reshape=None):
        if torch.is_inference_mode_enabled():
            raise GradCamError("gradients cannot be computed inside torch.inference_mode(); call this outside it")
        self.model = model
        self.reshape = reshape or default_reshape(model)  # tokens [B, T, D] -> [B, C, h, w], for transformers
        self.gaps = None
        self.input = as_batch(model, x).clone().requires_grad_(from_input)
        self.rectifiers = rectifiers
        self.rule = BackwardRule()
        self.not_rectifiers = set()
        self.activations = {}
        self.spatial = []  # the candidates for the default layer whose outputs were feature maps, in order
        self.unchecked_class = None  # the largest class given to targets() before the number of classes was known
        self._logits = None
        if not (from_input or layers or find_default_layer):
            return
        candidates = layer_candidates(model) if find_default_layer else {}
        maybe_default = {}  # {name: (activations, version)} of the candidates that may still be the default layer
        handles = [module.register_forward_hook(self._candidate_keeper(name, maybe_default)) for name, module in candidates.items()]
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
            raise GradCamError(f"layer {missed[0]!r} is never reached by the model's forward pass; pick one from list_layers(model)")
        if find_default_layer:
            self.default_layer = layer = last_layer(model, choose_layers(candidates, self.spatial))
            activations, version = maybe_default.get(layer, (None, None))
            if activations is not None and activations._version == version:
                self.activations.setdefault(layer, activations)

    def _keeper(self, name):
        def keep(module, inputs, output):
            if not (torch.is_tensor(output) and (output.dim() == 4 or (output.dim() == 3 and self.reshape is not None))):
                tokens = torch.is_tensor(output) and output.dim() == 3
                raise GradCamError(
                    f"layer {name!r} outputs {'a tensor of shape ' + str(list(output.shape)) if torch.is_tensor(output) else type(output).__name__}, "
                    "not feature maps [B, C, H, W]; "
                    + ("for tokens, pass reshape=a function from them to [B, C, h, w]" if tokens else "pick one from list_layers(model)")
                )
            if not torch.is_grad_enabled():  # the first of the layers in a pass with from_input=False
                torch.set_grad_enabled(True)  # until the pass ends: the graph starts here
                output = output.detach().requires_grad_()
            self.activations[name] = output
            # Later in-place ops (a ReLU(inplace=True) after a conv) must not overwrite the activations kept here.
            return output.clone()

        return keep

    def _candidate_keeper(self, name, maybe_default):
        """Keeps the output of a layer that may turn out to be the default one, and lets go of those that no longer can.

        The default is the last of the top-level layers, or of the trunk's children (see choose_layers):
        so a top-level layer outranks every layer before it except its own children, and a child its
        earlier siblings. Unlike _keeper, no clone: a clone of every layer's output would double the
        memory the backward pass keeps. The version counter tells whether an in-place op changed it later.
        """
        parent = name.rpartition(".")[0]

        def keep(module, inputs, output):
            if not is_spatial(output):
                return None
            if name not in self.spatial:
                self.spatial.append(name)
            for other in list(maybe_default):
                other_parent = other.rpartition(".")[0]
                if other_parent == parent if parent else other_parent != name:
                    del maybe_default[other]
            maybe_default[name] = output, output._version

        return keep

    @property
    def logits(self):
        if self._logits is None:  # a pass that records nothing: the model runs on x when the logits are first read
            with torch.no_grad():
                self._logits = run_model(self.model, self.input)
        return self._logits

    @property
    def probabilities(self):
        return self.logits.detach().softmax(dim=1)

    def targets(self, target=None, topk=None):
        """Class indices [k, B]: the given class(es) for every image, or each image's top-k (top-1 when both are None)."""
        if target is None:
            return self.logits.detach().topk(check_topk(1 if topk is None else topk, self.logits.shape[1]), dim=1).indices.T
        if topk is not None:
            raise GradCamError("give either target or topk, not both")
        classes = [target] if is_single(target) or not hasattr(target, "__iter__") else list(target)  # 1.5: class_index says why
        if not classes:
            raise GradCamError("target is an empty list; give at least one class")
        known = self._logits is not None
        indices = [class_index(c, self._logits.shape[1] if known else None) for c in classes]
        self.unchecked_class = None if known else max(indices)
        return torch.tensor(indices, device=self.input.device)[:, None].expand(-1, len(self.input))

    def check_classes(self, num_classes):
        """The range check that targets() left undone, given the number of classes read from another pass of the model."""
        if self.unchecked_class is not None:
            class_index(self.unchecked_class, num_classes)

    def _gradients(self, targets, wrt, rule, batched=False, last_use=False):
        """d logit_target / d wrt for each row of targets [k, B]: [k, *wrt.shape].

        `batched`: all k rows in one backward pass (torch's vmap). That is faster through the small
        head above a late layer, and on a GPU, where a small backward pass is bound by the cost of
        launching its kernels. On a CPU all the way down to the pixels it is slower (convolution
        backward under vmap runs one row at a time): there, one backward pass per row.
        `last_use`: no backward pass will follow, so the last one frees the graph as it goes. That lowers
        the peak memory, and on a CPU it runs about a third faster (freed buffers are reused, not newly mapped).
        """
        self.rule.name = rule
        one_hot = torch.zeros((len(targets), *self.logits.shape), dtype=self.logits.dtype, device=self.logits.device)
        one_hot.scatter_(2, targets[:, :, None], 1.0)
        if batched:
            return torch.autograd.grad(self.logits, wrt, one_hot, retain_graph=not last_use, is_grads_batched=True)[0]
        rows = len(one_hot)
        return torch.stack([torch.autograd.grad(self.logits, wrt, row, retain_graph=not (last_use and i == rows - 1))[0] for i, row in enumerate(one_hot)])

    def pixel_map(self, targets, rule, last_use=False):
        """d logit / d input with `rule` ("vanilla", "deconvnet" or "guided") at every rectifier: [k, B, 3, H, W].
        `last_use`: free the graph on the way (see _gradients); no map can be read from this pass after it."""
        if not self.input.requires_grad:
            raise GradCamError("the pixel maps need a ForwardPass recorded with from_input=True")
        if rule != "vanilla" and not self.rectifiers:
            raise GradCamError(f"the {rule} rule needs a ForwardPass recorded with rectifiers=True")
        if rule != "vanilla" and self.not_rectifiers:
            warnings.warn(
                f"the model uses {', '.join(sorted(self.not_rectifiers))}, which are not rectifiers: the {rule} rule "
                "applies only at ReLU/ReLU6, so through those activations this map is a plain gradient",
                stacklevel=3,
            )
        # On a GPU a pass over one image is bound by kernel launches: one batched backward pass serves the k classes
        # (measured on an H100: resnet50's five maps for 3 classes in 8.5 forward passes instead of 10.8). Over
        # many points (SmoothGrad, Integrated Gradients) the GPU is busy already, and vmap only adds work.
        batched = self.input.is_cuda and len(targets) > 1 and len(self.input) == 1
        return self._gradients(targets, self.input, rule, batched, last_use)

    def cam(self, targets, layer, upsample=True):
        """Grad-CAM [k, B, h, w] at `layer` (Selvaraju et al. 2017), bilinearly upsampled to the input size by default."""
        return cam_family.cams(self, ["gradcam"], targets, layer, upsample_to_input=upsample)["gradcam"]

    def maps(self, methods, targets, layer=None, options=None):
        """{method: maps [k, B, ...]} for some of ALL_METHODS, running each backward pass they need once.

        `options`: {method: keyword arguments} for SmoothGrad and Integrated Gradients (see noise_and_paths.py), and Score-CAM.
        Integrated Gradients' completeness gaps [k, B], when its options ask for return_delta, are left in `self.gaps`.
        """
        check_methods(methods)
        options = check_options(options or {})
        rules = {PIXEL_RULES.get(m, "guided") for m in methods if m in PIXEL_RULES or m == "guided_gradcam"}
        pixel = {rule: self.pixel_map(targets, rule).detach() for rule in rules}
        family = [m for m in ("gradcam",) + cam_family.CAM_FAMILY if m in methods or (m == "gradcam" and "guided_gradcam" in methods)]
        maps = cam_family.cams(self, family, targets, layer, options) if family else {}
        for m in methods:
            if m in family:
                continue
            if m == "input_x_gradient":
                maps[m] = pixel["vanilla"] * self.input.detach()
            elif m in PIXEL_RULES:
                maps[m] = pixel[PIXEL_RULES[m]]
            elif m == "guided_gradcam":
                maps[m] = pixel["guided"] * maps["gradcam"][:, :, None]
            elif m == "smoothgrad":
                maps[m] = noise_and_paths.smoothgrad_maps(self, targets, **options.get(m, {}))
            else:
                maps[m], self.gaps = noise_and_paths.integrated_gradients_maps(self, targets, **options.get(m, {}))
        return {m: maps[m] for m in methods}


def check_options(options):
    """{method: keyword arguments} for the methods that take options, or a one-line error naming the bad key."""
    takes = {"smoothgrad": noise_and_paths.smoothgrad_maps, "integrated_gradients": noise_and_paths.integrated_gradients_maps, "scorecam": cam_family.score_cam}
    for method, given in options.items():
        if method not in takes:
            raise GradCamError(f"options given for {method!r}, which takes none; options are for: {', '.join(takes)}")
        names = [name for name in inspect.signature(takes[method]).parameters if name not in ("pass_", "targets", "activations")]
        unknown = [name for name in given if name not in names]
        if unknown:
            raise GradCamError(f"unknown option {unknown[0]!r} for {method}; choose from: {', '.join(names)}")
    return options


def check_methods(methods):
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise GradCamError(f"unknown method {unknown[0]!r}; choose from: {', '.join(ALL_METHODS)}")


def explain(model, x, target=None, layer=None, methods=METHODS, topk=None, options=None, reshape=None):
    """Several methods from one forward pass: {method: maps}, plus "targets" (the class indices used).

    Shapes: a single image gives [k, ...] for a list of k classes (or topk), and one map for an
    int target or none (the predicted class); a batch of B images puts [B, ...] in front.
    `options`: {method: keyword arguments} for "smoothgrad" and "integrated_gradients", which run
    forward passes of their own over points near x (see noise_and_paths.py), and "scorecam" (cam_family.py). With Integrated
    Gradients' option return_delta=True comes "integrated_gradients_gap", the completeness gap of each map.
    `reshape`: tokens to feature maps, for a transformer other than torchvision's and timm's ViTs (see ForwardPass).
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    check_methods(methods)
    cam_methods = set(LAYER_METHODS) & set(methods)
    rectifiers = bool({"deconvnet", "guided_backprop", "guided_gradcam"} & set(methods))
    pixel_maps = bool(set(methods) - {*LAYER_METHODS, *MANY_POINTS} or "guided_gradcam" in methods)
    find_default_layer = bool(cam_methods) and layer is None
    if find_default_layer and (reshape or default_reshape(model)):  # a transformer: no feature maps to find on the way
        layer, find_default_layer = default_layer(model), False
    # Grad-CAM alone at a given layer records the graph from that layer only; finding the default
    # layer on the way needs it from the input, as the pixel maps do.
    layers = [layer] if cam_methods and layer is not None else []
    pass_ = ForwardPass(model, x, layers, rectifiers, find_default_layer, from_input=pixel_maps or find_default_layer, reshape=reshape)
    if find_default_layer:
        layer = pass_.default_layer
        if layer not in pass_.activations:  # changed in place after it ran (densenet), or run twice: record again
            pass_ = ForwardPass(model, x, [layer], rectifiers, from_input=pixel_maps, reshape=reshape)
    targets = pass_.targets(target, topk)
    single_class = is_single(target) and topk is None
    single_image = pass_.input.shape[0] == 1

    def shaped(maps):  # [k, B, ...] -> the shapes promised above
        maps = maps.transpose(0, 1)
        if single_class:
            maps = maps[:, 0]
        return maps[0] if single_image else maps

    result = {method: shaped(maps) for method, maps in pass_.maps(methods, targets, layer, options).items()}
    result["targets"] = shaped(targets[..., None])[..., 0]
    if pass_.gaps is not None:
        result["integrated_gradients_gap"] = shaped(pass_.gaps[..., None])[..., 0]
    return result


def is_single(target):
    """True for one class (an int, a name, a 0-d tensor) or None (the predicted class); False for a list of classes."""
    return target is None or isinstance(target, (int, str, np.integer)) or (torch.is_tensor(target) and target.dim() == 0)


def vanilla_backprop(model, x, target=None):
    """d logit_target / d x (Simonyan et al. 2014)."""
    return explain(model, x, target, methods="vanilla_backprop")["vanilla_backprop"]


def deconvnet(model, x, target=None):
    """The deconvnet backward (Zeiler & Fergus 2014): rectifiers pass max(g, 0), whatever their forward input."""
    return explain(model, x, target, methods="deconvnet")["deconvnet"]


def guided_backprop(model, x, target=None):
    """Guided backpropagation (Springenberg et al. 2015): rectifiers pass g only where x > 0 and g > 0."""
    return explain(model, x, target, methods="guided_backprop")["guided_backprop"]


def input_x_gradient(model, x, target=None):
    """Gradient x Input (Shrikumar et al. 2016): x times d logit_target / d x, element by element."""
    return explain(model, x, target, methods="input_x_gradient")["input_x_gradient"]


def gradcam(model, x, target=None, layer=None, reshape=None):
    """Grad-CAM (Selvaraju et al. 2017) at `layer` (default: the last layer with a spatial output), upsampled to x.
    `reshape`: tokens to feature maps, for transformers other than torchvision's and timm's ViTs (see vit.py)."""
    return explain(model, x, target, layer, methods="gradcam", reshape=reshape)["gradcam"]


def guided_gradcam(model, x, target=None, layer=None):
    """Guided backpropagation times the upsampled Grad-CAM (Selvaraju et al. 2017)."""
    return explain(model, x, target, layer, methods="guided_gradcam")["guided_gradcam"]
