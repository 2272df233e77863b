"""The committed notebooks: executed in order, Colab-ready, small. nbval re-runs each one in the same suite."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
SERIES = [
    "01_vanilla_backprop",
    "02_deconvnet",
    "03_guided_backprop",
    "04_gradcam",
    "05_guided_gradcam",
    "06_model_comparison",
    "07_occlusion",
    "08_sanity_checks",
    "09_faithfulness",
    "10_noise_and_paths",
    "11_after_gradcam",
    "12_which_to_trust",
    "13_catching_a_cheat",
]


def cells(path, kind):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def source(cell):
    return "".join(cell["source"])


def test_the_series_is_complete_and_in_order():
    assert [p.stem for p in NOTEBOOKS][: len(SERIES)] == SERIES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_executed_top_to_bottom_without_errors(path):
    code = [c for c in cells(path, "code") if source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, "a code cell was never run: `make notebooks`"
    assert counts == list(range(counts[0], counts[0] + len(counts))), "cells were run out of order: `make notebooks`"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    figures = sum(bool({"image/png", "image/jpeg"} & set(o.get("data", {}))) for c in code for o in c["outputs"])
    assert figures >= 1, "no figure in the committed outputs"
    assert path.stat().st_size < 2_000_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_setup_explorer_and_exercises(path):
    text = [source(c) for c in cells(path, "markdown")]
    code = [source(c) for c in cells(path, "code")]
    badge = (
        f"https://colab.research.google.com/github/{REPOSITORY.split('github.com/')[1]}/blob/main/notebooks/{path.name}"
    )
    assert badge in text[0], "the Colab badge must point at this notebook in the repository of pyproject.toml"
    setup = code[0]
    assert '"google.colab" in sys.modules' in setup and f'REPOSITORY = "{REPOSITORY}"' in setup
    assert not re.search(r"pip install[^\n]*\b(torch|numpy|ipywidgets)\b", setup), (
        "never reinstall Colab's torch, numpy or ipywidgets"
    )
    assert "Runs in" in text[0] and "You will learn" in text[0]
    assert any(re.search(r"gu\.explore(_\w+)?\(", c) for c in code), "an explorer: the series' or the topic's"
    assert "Things to try" in text[-1]
    assert any("NBVAL_CHECK_OUTPUT" in c for c in code) or path.stem.startswith("06")


def test_the_readme_says_what_notebook_12_shows():
    """The README's tables and written answer are notebook 12's executed output (tools/sync_readme.py copies them)."""
    spec = importlib.util.spec_from_file_location("sync_readme", ROOT / "tools" / "sync_readme.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    shown = sync.notebook_sections()
    assert set(shown) == {"shapes-evidence", "shapes-checks", "photos-table", "answer"}
    held = sync.readme_sections((ROOT / "README.md").read_text())
    for name, text in shown.items():
        assert held.get(name) == text, f"README's {name} differs from notebook 12's output: python tools/sync_readme.py"
