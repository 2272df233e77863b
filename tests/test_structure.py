"""The package's shape: layered modules without import cycles, one method table everything reads, typed public
signatures, and an import that changes no process-wide state."""

import ast
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import gradcam_utils as gu
from gradcam_utils import cli
from gradcam_utils.recording import _first_cuda_backward

PACKAGE = Path(gu.__file__).parent
# From the bottom up: a module may import only from the modules before it (README, "How the package is organised").
LAYERS = [
    "errors", "vit", "models", "layers", "baselines", "shapes", "small_models", "recording",
    "pixel_rules", "cam_family", "noise_and_paths", "occlusion", "method_table", "forward_pass", "methods",
    "evaluation", "localisation", "summary", "dataset_evaluation", "scorecard",
    "display", "explorer_base", "explorer", "topic_explorers", "cli_common", "cli_evaluate", "cli", "self_checks",
]  # fmt: skip


def imported_modules(path):
    """The package's modules that a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradcam_utils."):
            found.add(node.module.split(".")[1])
    return found


def test_every_module_is_in_a_layer_and_imports_only_from_below():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(LAYERS)
    for index, name in enumerate(LAYERS):
        above = imported_modules(PACKAGE / f"{name}.py") - set(LAYERS[:index])
        assert not above, f"{name}.py imports {sorted(above)}, which are not below it"


def test_modules_stay_a_comfortable_read():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes


def test_the_method_table_is_what_everything_reads():
    names = [m.name for m in gu.TABLE]
    assert len(names) == len(set(names))
    assert tuple(n for n in names if n != "occlusion") == gu.ALL_METHODS
    assert set(gu.METHODS) < set(gu.ALL_METHODS) and set(gu.LAYER_METHODS) < set(gu.ALL_METHODS)
    assert {m.name: m.title for m in gu.TABLE} == gu.TITLES and gu.display.TITLES is gu.TITLES
    methods = next(a for a in cli.parser()._actions if a.dest == "methods")
    assert tuple(methods.choices) == gu.ALL_METHODS and methods.default == list(gu.METHODS)
    evaluated = next(a for a in cli.evaluate_parser()._actions if a.dest == "methods")
    assert tuple(evaluated.choices) == (*gu.ALL_METHODS, "occlusion")
    for method in gu.TABLE:  # each option the table names is a keyword its function takes
        assert all(name in inspect.signature(method.options).parameters for name in method.option_names())


def test_public_functions_and_methods_are_typed():
    untyped = []
    for name in gu.__all__:
        value = getattr(gu, name)
        if inspect.isclass(value):
            members = [
                (f"{name}.{n}", f) for n, f in vars(value).items() if inspect.isfunction(f) and not n.startswith("_")
            ]
            members += [(f"{name}.__init__", value.__init__)] if "__init__" in vars(value) else []
        elif inspect.isfunction(value):
            members = [(name, value)]
        else:
            continue
        for label, function in members:
            signature = inspect.signature(function)
            missing = [
                p
                for p in signature.parameters
                if p != "self" and signature.parameters[p].annotation is inspect.Parameter.empty
            ]
            if missing or signature.return_annotation is inspect.Signature.empty:
                untyped.append(f"{label}({', '.join(missing)})")
    assert not untyped


def test_importing_the_package_changes_no_process_wide_state():
    code = (
        "import warnings, matplotlib, torch, torchvision, pandas, ipywidgets, IPython.display, tqdm.auto\n"
        "import matplotlib.pyplot\n"
        "before = (list(warnings.filters), matplotlib.get_backend())\n"
        "import gradcam_utils, gradcam_utils.cli\n"
        "assert (list(warnings.filters), matplotlib.get_backend()) == before, 'importing gradcam_utils changed them'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_cuda_context_warning_is_silenced_around_the_first_backward_pass_only(monkeypatch):
    """torch warns once per process, from its backward thread's first cuBLAS call; catch_warnings around every pass
    would reset which warnings were shown and repeat the caller's own warnings in a loop."""
    monkeypatch.setattr("gradcam_utils.recording._CUDA_BACKWARD_SEEN", set())
    device = gu.models.torch.device("cuda", 7)  # no GPU needed: only the warnings are handled
    message = (
        "Attempting to run cuBLAS, but there was no current CUDA context! Attempting to set the primary context..."
    )
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for _ in range(2):
            with _first_cuda_backward(device):
                warnings.warn(message, UserWarning, stacklevel=1)
    assert len(shown) == 1  # silenced the first time, not after


@pytest.mark.parametrize("bad", ["hires_cam", "occlusion"])
def test_an_unknown_method_names_the_choices(lite0, cat_dog, bad):
    with pytest.raises(gu.GradCamError, match=f"unknown method '{bad}'; choose from: vanilla_backprop, "):
        gu.explain(lite0, cat_dog, methods=[bad])
