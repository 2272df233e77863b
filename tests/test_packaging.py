"""Packaging: pyproject and environment.yml agree, and the README's two commands are what CI runs."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_installs_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["lab"])
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    pip = {line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")}
    assert pip - {"-e ."} == wanted
    assert "-e ." in pip and "  - conda-forge" in lines


def test_torch_range_admits_the_local_build():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in dependencies if re.match(r"torch\b", d))
    assert torch == "torch>=2.1"
    assert "TORCH ?= torch==2.14.1 torchvision==0.29.1" in (ROOT / "Makefile").read_text()


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_readme_images_exist():
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"\((docs/images/[^)]+\.png)\)", readme)
    assert len(images) >= 17
    missing = [image for image in images if not (ROOT / image).exists()]
    assert not missing


def test_a_plain_install_brings_the_sample_image(tmp_path):
    """`pip install` without -e, as Colab's setup cell and `pip install git+...` do: explore()'s default image comes
    along."""
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the working tree
    for name in ("gradcam_utils", "samples"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", tmp_path, source],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("gradcam_utils-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True, capture_output=True
    )
    code = (
        "import gradcam_utils, gradcam_utils.explorer as e, gradcam_utils.scorecard as s, pathlib; "
        "print(gradcam_utils.__file__); print(e.sample_image()); print(len(s.load_boxes())); "
        "print((pathlib.Path(gradcam_utils.__file__).parent / 'py.typed').exists()); "
        "print(type(gradcam_utils.load_small_model('shapes')).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    site = tmp_path / "site" / "gradcam_utils"
    assert printed == [
        str(site / "__init__.py"),
        str(site / "samples" / "cat_dog.png"),
        str(len(json.loads((ROOT / "samples" / "boxes.json").read_text()))),
        "True",  # py.typed: type checkers read the package's annotations
        "SmallCNN",  # the small models' weights come along
    ]
    attribution = (ROOT / "samples" / "README.md").read_text()
    assert (site / "samples" / "README.md").read_text() == attribution
