"""The viz layer's file writers: atomic (``_io.atomic_path``) and offline.

Every HTML page works without a network: plotly.js is inlined, or, for a folder of many
small pages (the example maps of ``xcos-xai compare``), one ``plotly.min.js`` is written
beside them once and loaded by a relative path (``<script src="plotly.min.js">``), so
four pages cost one copy of plotly.js (about 4.8 MB) instead of four. Never the CDN.
"""

from __future__ import annotations

from pathlib import Path

from plotly.offline import get_plotlyjs

from .._io import atomic_path

__all__ = ["PLOTLY_JS", "save_matplotlib", "write_figure_html", "write_html",
           "write_plotly_js"]

PLOTLY_JS = "plotly.min.js"
"""The shared plotly.js bundle's file name, beside the pages that load it."""


def write_html(path: str | Path, page: str) -> Path:
    """``page`` to ``path`` (UTF-8) atomically: a failed write leaves the old file or none.

    Example:
        >>> import tempfile
        >>> p = write_html(Path(tempfile.mkdtemp()) / "a.html", "<p>ok</p>")
        >>> p.read_text(encoding="utf-8")
        '<p>ok</p>'
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def write_plotly_js(folder: str | Path) -> Path:
    """The installed plotly's ``plotly.min.js`` in ``folder`` (atomically; rewritten only
    when missing or from another plotly version)."""
    path = Path(folder) / PLOTLY_JS
    js = get_plotlyjs()
    data = js.encode("utf-8")
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return path


def write_figure_html(fig, path: str | Path, shared_plotlyjs: bool = False) -> Path:
    """A plotly figure as an offline HTML page, atomically: plotly.js inlined, or with
    ``shared_plotlyjs`` loaded from :data:`PLOTLY_JS` beside the page (written if needed)."""
    path = Path(path)
    if shared_plotlyjs:
        write_plotly_js(path.parent)
    # "directory": <script src="plotly.min.js">, a relative path, no network
    page = fig.to_html(full_html=True, include_plotlyjs="directory" if shared_plotlyjs else True)
    return write_html(path, page)


def save_matplotlib(fig, path: str | Path, **savefig_kwargs) -> Path:
    """``fig.savefig`` atomically, in the format of ``path``'s suffix (PNG without one)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **savefig_kwargs)
    return path
