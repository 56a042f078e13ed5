"""A real browser: JupyterLab headless, Chromium runs each of the six notebooks as a reader does.

For every notebook: Run All Cells in JupyterLab, then the page must show its widgets and plotly
figures, no error output, no stderr stream (a warning dump is a defect: notes belong in the
figures) and no dialog; every pair figure on the page keeps its S colour scale within a
cosine's range (at most 1). A screenshot per notebook is kept as a test artefact in
``outputs/test-artifacts/browser_<notebook>.png`` (on a failure, the page as it was then:
``browser_<notebook>_failed.png``).

Needs Debian's Chromium (``apt-get install -y --no-install-recommends chromium``; ``make test``
installs it when run as root) and Playwright (dev extras); Playwright's own browser download
is not used. Skipped on a developer machine without Chromium; **fails** in CI (``CI=true``).
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
# notebook -> (CSS selector, how many at least) that its widgets and figures must render
NOTEBOOKS = {
    "01_quickstart.ipynb": {".js-plotly-plot": 2},
    "02_pair_explorer.ipynb": {".widget-slider": 2, ".js-plotly-plot": 2, ".widget-button": 1},
    "03_failure_cases.ipynb": {".widget-select": 1, ".js-plotly-plot": 2},
    "04_attention_ablation.ipynb": {".widget-slider": 2, ".js-plotly-plot": 2},
    "05_gradcam_vs_xcos.ipynb": {".js-plotly-plot": 8, ".jp-RenderedHTMLCommon table": 1,
                                 ".widget-dropdown": 3},
    "06_training.ipynb": {".js-plotly-plot": 2},
}
# where the screenshot looks: the output that holds the notebook's main view
SHOT_AT = {
    "01_quickstart.ipynb": ".js-plotly-plot",
    "02_pair_explorer.ipynb": ".widget-vbox",
    "03_failure_cases.ipynb": ".widget-vbox",
    "04_attention_ablation.ipynb": ".widget-vbox",
    "05_gradcam_vs_xcos.ipynb": ".jp-RenderedHTMLCommon table",
    "06_training.ipynb": ".js-plotly-plot >> nth=-1",  # the new head's pair figure
}
# a second screenshot, browser_<notebook>_widget.png: the notebook's widget further down
SHOT_WIDGET_AT = {"05_gradcam_vs_xcos.ipynb": ".widget-vbox"}  # MethodComparer
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


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory, lfw_root):
    """A headless JupyterLab serving a copy of the notebooks (the committed files stay clean),
    with news and update checks off; one server for all six notebooks."""
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "lab"
    shutil.copytree(REPO / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    # 04 and 05 read the committed comparison runs beside the notebooks (linked, not copied)
    results = root / "training" / "results"
    results.mkdir(parents=True)
    for run in ("compare_lfw300", "faithful_maps"):
        (results / run).symlink_to(REPO / "training" / "results" / run)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell stays in the page (no windowing), so its outputs can be counted and checked
    notebook_settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
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
# every code cell has run: its prompt shows a number, none is queued ([*]) or new ([ ]).
# A collapsed input shows a placeholder instead, whose prompt stays empty: such a cell is
# counted, not read (null: no prompt of its own on the page, or one that is not displayed).
PROMPTS = """[...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')].map(c => {
    const e = c.querySelector('.jp-InputPrompt:not(.jp-Placeholder-prompt)');
    return e && e.offsetParent !== null ? e : null; })"""
ALL_RAN = """n => {
    const p = """ + PROMPTS + """;
    return p.length === n && p.every(e => e === null || /\\[\\d+\\]/.test(e.textContent))
        && p.some(e => e !== null);
}"""
STARTED = """() => (""" + PROMPTS + """).some(e => e !== null && e.textContent.includes('[*]'))"""


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


# The S colour scales of every pair figure on the page, read from plotly's own figure data
S_SCALES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(
    gd => (gd.data || []).filter(t => t.type === 'heatmap' && String(t.name).startsWith('S ('))
        .map(t => [t.zmin, t.zmax]))"""


TRACES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(
    gd => (gd.data || []).map(t => t.type + ': ' + t.name))"""


def _open_session(base: str, token: str, notebook: str) -> str:
    """The kernel session first: without it a fresh page can hang behind "Select Kernel".
    (The REST state can stay "starting" until a client connects: the page waits for the
    notebook's own "idle" indicator instead.)"""
    session = _api(base, token, "/api/sessions", "POST", {
        "path": f"notebooks/{notebook}", "name": notebook, "type": "notebook",
        "kernel": {"name": "python3"}})
    assert session["kernel"]["name"] == "python3"
    return session["id"]


@pytest.mark.parametrize("notebook", list(NOTEBOOKS))
def test_notebook_runs_and_renders_in_chromium(jupyterlab, notebook):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright (pip install -e '.[dev]')")
    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = notebook.removesuffix(".ipynb")
    shot = ARTIFACTS / f"browser_{stem}.png"
    failed_shot = ARTIFACTS / f"browser_{stem}_failed.png"
    for old in (shot, failed_shot):
        old.unlink(missing_ok=True)
    n_code = _code_cells(REPO / "notebooks" / notebook)
    session = _open_session(base, token, notebook)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            # a workspace of its own: the page holds this notebook only (not the tabs that
            # the earlier notebooks left in the default workspace)
            page.goto(f"{base}/lab/workspaces/{stem}/tree/notebooks/{notebook}?reset&"
                      f"token={token}")
            page.wait_for_function(READY, arg=n_code, timeout=180_000, polling=500)
            _run_all(page, n_code)
            page.wait_for_function(ALL_RAN, arg=n_code, timeout=600_000, polling=1000)
            for selector, least in NOTEBOOKS[notebook].items():
                page.wait_for_function(
                    "([s, n]) => document.querySelectorAll(s).length >= n",
                    arg=[selector, least], timeout=60_000, polling=500)
            text = "\n".join(page.locator(".jp-OutputArea").all_inner_texts())
            assert "Traceback" not in text and "Error displaying widget" not in text, text
            assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
            # no stderr stream: warnings with paths are for developers, not readers
            stderr = page.locator("[data-mime-type='application/vnd.jupyter.stderr']")
            assert stderr.count() == 0, stderr.all_inner_texts()
            # no dialog over the page (kernel choice, news, a failed save ...)
            assert page.locator(".jp-Dialog").count() == 0
            # every pair figure's S scale within a cosine's range, its top at exactly 1
            if notebook != "05_gradcam_vs_xcos.ipynb":  # (a widget's plot fills in after
                page.wait_for_function(f"() => ({S_SCALES})().length > 0",  # its element)
                                       timeout=60_000, polling=500)
            scales = page.evaluate(S_SCALES)
            assert all(-1 <= lo < hi <= 1 for lo, hi in scales), scales
            if notebook != "05_gradcam_vs_xcos.ipynb":  # 05 shows no pair figure
                assert scales and all(hi == 1 for _, hi in scales), (scales, page.evaluate(
                    TRACES))
                # (an SVG <text>: text_content, as inner_text is for HTML elements only)
                titles = [t.text_content() or "" for t in
                          page.locator(".js-plotly-plot .gtitle").all()]
                assert any("xCos " in t and "threshold" in t for t in titles), titles
            if notebook == "02_pair_explorer.ipynb":
                assert "pairs; methods:" in text
                assert page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot "
                                    ".imagelayer").count() >= 1
            # the main view at the top of the window, waited on until plotly has drawn it
            target = page.locator(SHOT_AT[notebook]).first
            target.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shot))
            if notebook in SHOT_WIDGET_AT:
                widget = page.locator(SHOT_WIDGET_AT[notebook]).first
                widget.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(1500)
                widget.screenshot(path=str(ARTIFACTS / f"browser_{stem}_widget.png"))
        except BaseException:
            page.screenshot(path=str(failed_shot))
            raise
        finally:
            browser.close()
            # its kernel ends here: six notebooks' kernels at once would crowd a small machine
            _api(base, token, f"/api/sessions/{session}", "DELETE")
    assert shot.stat().st_size > 20_000  # a real picture, not a blank page


@pytest.fixture(scope="module")
def reports(tmp_path_factory, lfw_root):
    """Both reports of ``make demo``: the LFW evaluation's and the shipped photos' (the one a
    machine without LFW gets)."""
    from xcos_xai.apps.lfw_report import run_lfw_evaluation
    from xcos_xai.apps.photo_demo import run_photo_demo

    out = tmp_path_factory.mktemp("reports")
    run_lfw_evaluation(out / "lfw", root=lfw_root, report=True, progress=False)
    return {"lfw": out / "lfw" / "report.html", "photos": run_photo_demo(out / "photos")}


# report -> (plotly figures at least, the heading the second screenshot shows)
REPORTS = {"lfw": (19, "False rejects"), "photos": (3, "Impostor pair")}


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_renders_in_chromium(reports, name):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright (pip install -e '.[dev]')")
    path = reports[name]
    text = path.read_text(encoding="utf-8")
    # plotly.js once per page (~4.8 MB), the faces as JPEG: the rest stays small
    assert text.count("Plotly=") <= 1 and len(text) < 6_500_000, len(text)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures, section = REPORTS[name]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(path.as_uri())
            page.wait_for_function("n => document.querySelectorAll('.js-plotly-plot').length "
                                   ">= n", arg=figures, timeout=120_000, polling=500)
            assert not errors, errors
            scales = page.evaluate(S_SCALES)
            assert scales and all(-1 <= lo < hi == 1 for lo, hi in scales), scales
            if name == "lfw":  # human headers, 2-decimal accuracies
                headers = page.locator("table.table th").all_inner_texts()
                assert "accuracy (%)" in headers and "accuracy_mean" not in headers
                assert re.fullmatch(r"\d\d\.\d\d", page.locator(
                    "table.table td").nth(2).inner_text())
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / f"report_{name}.png"))
            page.get_by_role("heading", name=re.compile(section)).first.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / f"report_{name}_pairs.png"))
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / f"report_{name}_failed.png"))
            raise
        finally:
            browser.close()
