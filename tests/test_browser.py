"""A real browser: JupyterLab headless, Chromium runs 02_pair_explorer, widgets must render.

Needs Debian's Chromium (``apt-get install -y --no-install-recommends chromium``; ``make test``
installs it when run as root) and Playwright (dev extras); Playwright's own browser download
is not used. Skipped on a developer machine without Chromium; **fails** in CI (``CI=true``).
The screenshot is kept as a test artefact in ``outputs/test-artifacts/`` (on a failure, the
page as it was then: ``browser_02_pair_explorer_failed.png``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "02_pair_explorer.ipynb"
ARTIFACTS = REPO / "outputs" / "test-artifacts"
CHROMIUM_ARGS = ["--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]


def _missing(message: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {message}")
    pytest.skip(message)


def _chromium() -> str:
    for candidate in (os.environ.get("XCOS_XAI_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    _missing("Chromium: apt-get install -y --no-install-recommends chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET", body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


@pytest.fixture
def jupyterlab(tmp_path, lfw_root):
    """A headless JupyterLab serving a copy of the notebooks (the committed files stay clean),
    with news and update checks off, and the notebook's kernel session already created."""
    root = tmp_path / "lab"
    shutil.copytree(REPO / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), "xcos-xai-browser-test"
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--allow-root", f"--ServerApp.root_dir={root}",
         f"--IdentityProvider.token={token}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start: " + (
                        tmp_path / "jupyterlab.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        # The kernel session first: without it a fresh page can hang behind "Select Kernel".
        session = _api(base, token, "/api/sessions", "POST", {
            "path": f"notebooks/{NOTEBOOK}", "name": NOTEBOOK, "type": "notebook",
            "kernel": {"name": "python3"}})
        assert session["kernel"]["name"] == "python3"
        # (the REST state can stay "starting" until a client connects: the page waits for the
        # notebook's own "idle" indicator instead)
        yield base, token
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)  # the server we started and its kernel
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


# The notebook is ready for "Run All" once all its code cells are on the page and the status
# bar names the kernel as idle: the toolbar's execution indicator alone already says "idle"
# while the page still shows "No Kernel | Initializing", and a Run All clicked then is lost.
READY = """n => document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell').length === n
    && [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
        e => /^Python 3.*\\|\\s*Idle$/.test(e.textContent.trim()))"""
# every code cell has run: its prompt shows a number, none is queued ([*]) or new ([ ])
ALL_RAN = """n => {
    const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
    return p.length === n && p.every(e => /\\[\\d+\\]/.test(e.textContent));
}"""
STARTED = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].some(
    e => e.textContent.includes('[*]'))"""


def _code_cells(path: Path) -> int:
    return sum(c["cell_type"] == "code" for c in json.loads(path.read_text())["cells"])


def _run_all(page, n_code: int) -> None:
    """Run > Run All Cells, as a reader would; once more if no cell was queued (a click that
    raced the page's last re-layout)."""
    for attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(f"n => ({STARTED})() || ({ALL_RAN})(n)", arg=n_code,
                                   timeout=60_000, polling=250)
            return
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")  # close the menu if it is still open


def test_pair_explorer_runs_and_renders_in_chromium(jupyterlab):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright (pip install -e '.[dev]')")
    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "browser_02_pair_explorer.png"
    failed_shot = ARTIFACTS / "browser_02_pair_explorer_failed.png"
    for old in (shot, failed_shot):
        old.unlink(missing_ok=True)
    n_code = _code_cells(REPO / "notebooks" / NOTEBOOK)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}")
            page.wait_for_function(READY, arg=n_code, timeout=180_000, polling=500)
            _run_all(page, n_code)
            page.wait_for_function(ALL_RAN, arg=n_code, timeout=600_000, polling=1000)
            page.wait_for_selector(".widget-slider", timeout=60_000)
            page.wait_for_function(
                "() => document.querySelectorAll('.js-plotly-plot').length >= 2",
                timeout=60_000)
            outputs = page.locator(".jp-OutputArea").all_inner_texts()
            text = "\n".join(outputs)
            assert "Traceback" not in text and "Error displaying widget" not in text, text
            assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
            assert "xCos" in text and "pairs; methods:" in text
            # no dialog over the page (kernel choice, news, a failed save ...)
            assert page.locator(".jp-Dialog").count() == 0
            # the widgets are live: two FloatSliders (threshold, overlay), a plotly figure
            # with the five panels' images and heat maps drawn
            assert page.locator(".widget-slider").count() >= 2
            assert page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot "
                                ".imagelayer").count() >= 1
            # (an SVG <text>: text_content, as inner_text is for HTML elements only)
            title = page.locator(".js-plotly-plot .gtitle").first.text_content() or ""
            assert title.startswith("xCos "), title
            figure = page.locator(".js-plotly-plot").first
            figure.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
        except BaseException:
            page.screenshot(path=str(failed_shot))
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000  # a real picture, not a blank page
