"""The notebooks as a learner sees them: JupyterLab in headless Chromium, driven by Playwright.

Starts JupyterLab as `make lab` does, on a free loopback port with a token, over a copy of the
notebooks (JupyterLab autosaves, and must not overwrite the committed outputs). For each notebook:
Run All Cells, no error shown, the explorer's widgets present, and moving the class and layer
sliders changes the displayed image; in 07-09, moving every slider of the topic's own explorer
changes its picture too. Screenshots of each explorer go to artifacts/browser/.

Run it alone with `.venv/bin/python -m pytest tests/test_browser.py`. It needs Debian's chromium
(`make test` installs it with apt-get when it can); without it the test is skipped, saying why.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
# Each notebook states its budget on a 2-core CPU ("Runs in** about 60 s"); the test allows four times that, for a
# loaded
# machine, plus a minute for the kernel's start and the browser's rendering.
MARGIN, START = 4, 60


def budget(name):
    """The seconds a notebook says it runs in, from its first cell."""
    first = "".join(json.loads((ROOT / "notebooks" / name).read_text())["cells"][0]["source"])
    found = re.search(r"Runs in\*\* about (\d+) s", first)
    assert found, f"{name} does not state its budget as 'Runs in** about N s'"
    return int(found.group(1))


def api(url, path, method="GET"):
    request = urllib.request.Request(f"{url}/api/{path}?token={TOKEN}", method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def shut_down_kernels(url):
    """Close every notebook's session, and with it its kernel: twelve kernels alive at once held half of a 24 GB
    machine."""
    for session in api(url, "sessions"):
        api(url, f"sessions/{session['id']}", "DELETE")


TOKEN = "gradcam-browser-test"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"Chromium not found at {CHROMIUM}: install Debian's chromium (`make test` does, with apt-get, when run as "
    "root)",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab over a copy of notebooks/ and samples/; stopped at the end, even on failure."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "samples", root / "samples")
    # Settings and workspaces of its own: every cell rendered (JupyterLab 4 otherwise virtualises long notebooks), no
    # news popup.
    settings = root / "settings"
    for plugin, values in {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        (settings / "@jupyterlab" / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    jupyter = [sys.executable, "-m", "jupyter"]
    port = free_port()
    command = jupyter + [
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={TOKEN}",
        "notebooks/",
    ]
    if os.geteuid() == 0:
        command.insert(4, "--allow-root")
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
    }
    with open(root / "jupyter.log", "w") as log:
        server = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
        yield from _serve(server, f"http://127.0.0.1:{port}", root / "jupyter.log")


def _serve(server, url, log):
    """The server's URL once it answers; stopped at the end, even on failure."""
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + log.read_text()[-2000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def menu_command(page, menu, command):
    """Click menu > command, as a learner does, once JupyterLab has enabled it for the open notebook.

    Right after a page load the notebook may not yet be the current widget, and a click on a
    disabled menu item does nothing: so focus the notebook first, and wait for the item to be enabled.
    """
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
    page.get_by_role("menuitem", name=menu, exact=True).click()
    item = page.locator(f"li[data-command='{command}']")
    expect(item).not_to_have_class(re.compile(r"\blm-mod-disabled\b"), timeout=30_000)
    item.click()


def explorer_image(page, explorer=None):
    """The src of the picture an explorer shows (default: the notebook's last one): its Image widget."""
    image = (
        explorer.locator("img.widget-image") if explorer is not None else page.locator(".widget-vbox img.widget-image")
    ).last
    image.wait_for(timeout=60_000)
    return image.get_attribute("src")


def wait_for_new_image(page, before, what, explorer=None):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if explorer_image(page, explorer) != before:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"moving the {what} did not change the displayed image")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_and_its_explorer_responds(lab, browser, name):
    assert api(lab, "kernels") == [], "a kernel of an earlier notebook is still running"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab}/lab/tree/{name}?token={TOKEN}&reset")  # reset: no notebook left open by the previous test
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=60_000)
        # Clear the committed outputs first, so that every count and picture seen below is from this run.
        outputs = page.locator(".jp-Notebook .jp-OutputArea-output")
        for attempt in range(3):
            menu_command(page, "Edit", "editmenu:clear-all")
            try:
                outputs.first.wait_for(state="detached", timeout=10_000)
                break
            except PlaywrightTimeout:
                assert attempt < 2, f"Edit > Clear Outputs of All Cells left {outputs.count()} outputs in place"
        code_cells = page.locator(".jp-Notebook .jp-CodeCell")
        first_prompt = code_cells.first.locator(".jp-InputPrompt")
        for attempt in range(2):
            menu_command(page, "Run", "runmenu:run-all")
            try:  # started: the first prompt shows [*] or a count
                expect(first_prompt).not_to_have_text(re.compile(r"^\s*\[\s*\]:\s*$"), timeout=20_000)
                break
            except AssertionError:
                assert attempt < 1, "Run > Run All Cells did not start the notebook"
        status = page.locator(".jp-Notebook-ExecutionIndicator").first
        # Done when every prompt shows its execution count and the kernel is idle again.
        allowed = MARGIN * budget(name) + START
        deadline = time.monotonic() + allowed
        while True:
            prompts = code_cells.locator(".jp-InputPrompt").all_inner_texts()
            done = prompts and all(p.strip()[1:-2].isdigit() for p in prompts)
            if done and status.get_attribute("data-status") == "idle":
                break
            assert time.monotonic() < deadline, f"{name} did not finish in {allowed} s; prompts: {prompts}"
            page.wait_for_timeout(500)

        errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
        assert errors.count() == 0, errors.first.inner_text()[:2000]

        # The series' explorer (01-07, 10) and the topic's own (07-09): every notebook has at least one.
        explorers = page.locator(".widget-vbox:not(.gu-topic-explorer)").filter(has=page.locator("img.widget-image"))
        topic = page.locator(".gu-topic-explorer")
        assert explorers.count() + topic.count() >= 1, "no explorer in the notebook"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if explorers.count():
            explorer = explorers.last
            explorer.scroll_into_view_if_needed()
            # SmoothGrad's and IG's own sliders show only for their method
            sliders = explorer.locator(".widget-slider:visible")
            for label in ("Class", "Layer", "Overlay alpha"):
                assert sliders.filter(has_text=label).count() == 1, f"the {label} slider"
            assert explorer.locator(".widget-combobox input, .widget-text input[list]").count() >= 1, "the class picker"
            assert explorer.locator(".widget-upload").count() == 1

            explorer.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}.png"))

            moves = [("Class", "class slider", 0.9), ("Layer", "layer slider", 0.5)]
            # Notebook 10's explorer starts on SmoothGrad: its own slider too
            if sliders.filter(has_text="Samples").count():
                moves.insert(1, ("Samples", "samples slider", 0.1))
            for label, what, fraction in moves:
                slider = sliders.filter(has_text=label).first
                method = explorer.locator("select").first
                if label == "Layer" and method.evaluate("s => s.options[s.selectedIndex].text") not in (
                    "Grad-CAM",
                    "Guided Grad-CAM",
                ):
                    # A pixel-space method has no layer: switch the explorer's method to Grad-CAM first.
                    before = explorer_image(page, explorer)
                    method.select_option(label="Grad-CAM")
                    wait_for_new_image(page, before, "method dropdown", explorer)
                before = explorer_image(page, explorer)
                track = slider.locator(".noUi-target").first
                box = track.bounding_box()
                page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
                wait_for_new_image(page, before, what, explorer)
            explorer.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}-moved.png"))

        # Notebooks 07-09 also have an explorer fitted to their topic: every slider in it must redraw its picture.
        if topic.count():
            topic.scroll_into_view_if_needed()
            topic.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}-topic.png"))
            sliders = topic.locator(".widget-slider:visible")
            assert sliders.count() >= 2, f"the topic explorer has {sliders.count()} sliders"
            for index in range(sliders.count()):
                label = sliders.nth(index).locator(".widget-label").first.inner_text().strip()
                before = explorer_image(page, topic)
                box = sliders.nth(index).locator(".noUi-target").first.bounding_box()
                page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
                wait_for_new_image(page, before, f"topic explorer's {label} slider", topic)
            topic.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}-topic-moved.png"))
    finally:
        page.close()
        shut_down_kernels(lab)
