"""The package's layering, checked where it matters to users: what `import xcos_xai` loads
and what the public registries hold (the full layer contracts: `lint-imports`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> dict:
    """Run ``code`` (which prints one JSON line) in a fresh interpreter on this checkout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_xcos_xai_loads_no_training_and_no_test_backbone():
    got = _fresh("import json, sys, xcos_xai; "
                 "print(json.dumps({'modules': sorted(m for m in sys.modules "
                 "if m.startswith('xcos_xai')), 'backbones': xcos_xai.list_backbones(), "
                 "'file': xcos_xai.__file__}))")
    assert Path(got["file"]).resolve().parent == REPO / "xcos_xai"  # this checkout's code
    loaded = got["modules"]
    assert "xcos_xai.explain" in loaded and "xcos_xai.pretrained" in loaded  # it did load
    assert [m for m in loaded if m.startswith(("xcos_xai.training", "xcos_xai.apps",
                                               "xcos_xai.widgets", "xcos_xai.testing"))] == []
    assert "dlib_resnet_v1" in got["backbones"] and "tiny_facenet" not in got["backbones"]


def test_the_test_backbone_is_registered_only_by_the_test_helpers():
    got = _fresh("import json, xcos_xai.training, xcos_xai.cli, xcos_xai.models as m; "
                 "before = m.list_backbones(); import xcos_xai.testing; "
                 "print(json.dumps([before, m.list_backbones()]))")
    before, after = got
    assert "tiny_facenet" not in before
    assert sorted(set(after) - set(before)) == ["tiny_facenet"]


def test_training_run_imports_the_modules_it_is_told_to(capsys):
    got = _fresh("import json; from xcos_xai.training.run import main; "
                 "from xcos_xai.models import list_backbones; "
                 "code = main(['--import', 'xcos_xai.testing', '--set', 'run.recipe=scratch', "
                 "'--set', 'model.backbone=tiny_facenet', '--set', 'data.root=tests', "
                 "'--print-config']); "
                 "print(json.dumps([code, list_backbones()]))")
    assert got[0] == 0 and "tiny_facenet" in got[1]
    from xcos_xai.training.run import main

    assert main(["--import", "no_such_module_xyz", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error: --import no_such_module_xyz: No module named "
                          "'no_such_module_xyz'; give the dotted name")
