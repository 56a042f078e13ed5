"""The main job without LFW: explain real photos that installed packages ship.

matplotlib ships ``grace_hopper.jpg`` (Rear Admiral Grace Hopper) and scikit-image ships
``astronaut.png`` (astronaut Eileen Collins). Two people only, one photo each: "genuine"
pairs here are a photo against its own mirror image, which is the best a package-only demo
can do; an impostor pair is the two people. For real numbers, point XCOS_XAI_DATA at LFW.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

import numpy as np

from ..core.device import resolve_device
from ..data.images import load_image
from ..explain import explain_pair
from ..pretrained import BUNDLE_LABELS, bundle_name, load_pretrained
from ..viz.report import write_report


def shipped_photos() -> dict[str, Path]:
    """Paths of real face photos that installed packages ship."""
    # Found, not imported: importing matplotlib and scikit-image would take a second.
    def package_dir(name: str) -> Path:
        return Path(importlib.util.find_spec(name).origin).parent

    return {
        "Grace Hopper (matplotlib sample data)":
            package_dir("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg",
        "Eileen Collins (scikit-image astronaut.png)":
            package_dir("skimage") / "data" / "astronaut.png",
    }


def run_photo_demo(out: Path, model: str = "dlib", device: str = "cpu") -> Path:
    """The report of the shipped photos explained by ``model`` (``"dlib"``, ``"sface"`` or a
    bundle name) on ``device`` (``"auto"``: CUDA when present), written to
    ``out/report.html``."""
    bundle = bundle_name(model)
    device = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    model = load_pretrained(bundle).to(device)
    photos = shipped_photos()
    (name_a, path_a), (name_b, path_b) = photos.items()
    img_a, img_b = load_image(path_a), load_image(path_b)
    genuine = [(f"{name_a} vs the same photo mirrored",
                explain_pair(img_a, np.ascontiguousarray(img_a[:, ::-1]), model=model)),
               (f"{name_b} vs the same photo mirrored",
                explain_pair(img_b, np.ascontiguousarray(img_b[:, ::-1]), model=model))]
    impostor = [(f"{name_a} vs {name_b}", explain_pair(img_a, img_b, model=model))]
    intro = ("<p>No LFW data directory was found, so this report explains photos that "
             "installed packages ship: matplotlib's <code>grace_hopper.jpg</code> and "
             "scikit-image's <code>astronaut.png</code>. Genuine pairs are a photo against "
             "its mirror image (only one photo per person ships). Set XCOS_XAI_DATA to a "
             "folder holding LFW for the full evaluation.</p>"
             f"<p>Model: {html.escape(BUNDLE_LABELS[bundle])}, bundled xCos head "
             f"<code>{html.escape(bundle)}</code>.</p>")
    return write_report(out / "report.html", "xCos explanations of shipped photos "
                        f"({BUNDLE_LABELS[bundle].split(' (')[0]})", intro,
                        None, [], [("Genuine pairs (photo vs mirror)", genuine),
                                   ("Impostor pair", impostor)])
