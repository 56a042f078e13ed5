"""Training data: identity folders, validation pair sets, head-only recipe, freezing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xcos_xai.data.folders import IdentityFolders
from xcos_xai.testing import TinyFaceNet  # importing it registers tiny_facenet
from xcos_xai.training.config import ConfigError, ValSet, load_config
from xcos_xai.training.data import PairDataset, _balanced_folds, build_val_set, to_chip
from xcos_xai.training.engine import Trainer, train
from xcos_xai.training.synthetic import write_identity_folders


def test_identity_folders_layout_and_filter(tmp_path):
    write_identity_folders(tmp_path, n_identities=3, n_images=2, size=32)
    single = tmp_path / "zz_single"
    single.mkdir()
    Image.new("RGB", (40, 40)).save(single / "a.jpg")
    (single / "notes.txt").write_text("not an image")
    ds = IdentityFolders(tmp_path)
    assert ds.identities == ["id_000", "id_001", "id_002", "zz_single"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2, 3] and ds.num_classes == 4
    assert ds.load(6).shape == (40, 40, 3)
    assert IdentityFolders(tmp_path, min_images=2).num_classes == 3
    with pytest.raises(ValueError, match="at least 2 identities"):
        IdentityFolders(tmp_path, min_images=3)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        IdentityFolders(tmp_path / "missing")


def test_pair_dataset_flips_and_resizes(tmp_path):
    write_identity_folders(tmp_path, n_identities=2, n_images=2, size=32)
    ds = IdentityFolders(tmp_path)
    a, b, la, lb = PairDataset(ds, (32, 32))[(0, 2, 1, 0)]
    raw = torch.from_numpy(ds.load(0)).permute(2, 0, 1)
    assert torch.equal(a, raw.flip(2)) and la == 0 and lb == 1
    assert torch.equal(b, torch.from_numpy(ds.load(2)).permute(2, 0, 1))
    assert to_chip(ds.load(0), (48, 40)).shape == (3, 48, 40)


def test_balanced_folds_give_every_fold_both_classes():
    same = np.array([True] * 300 + [False] * 300)
    folds = _balanced_folds(same)
    for k in range(10):
        assert (same[folds == k]).sum() == 30 and (~same[folds == k]).sum() == 30


@pytest.mark.data
def test_lfw_held_out_fold_is_people_disjoint_from_training_folds(lfw_root):
    from xcos_xai.data.folders import LFWPeople
    from xcos_xai.data.lfw import LFW

    lfw = LFW(lfw_root)
    val = build_val_set(ValSet(name="f0", format="lfw", path=str(lfw_root), folds=[0]))
    assert len(val) == 600 and val.same.sum() == 300
    train_people = LFWPeople(lfw, folds=range(1, 10), min_images=5, aligner=object())
    assert not (set(train_people.identities) & val.people)
    assert len(train_people) == 5379 and train_people.num_classes == 376


def _tiny_cfg(tmp_path, **extra):
    data = write_identity_folders(tmp_path / "data", n_identities=6, n_images=4, size=32)
    base = ["run.recipe=scratch", f"run.out={tmp_path / 'out'}", "model.backbone=tiny_facenet",
            f"data.root={data}", "data.workers=0", "optim.batch_size=4",
            "engine.progress=false", "engine.tensorboard=false"]
    return load_config(None, base + [f"{k}={v}" for k, v in extra.items()])


def test_freeze_prefixes(tmp_path):
    trainer = Trainer(_tiny_cfg(tmp_path, **{"model.freeze": '["trunk.body.0."]'}))
    frozen = {n for n, p in trainer.module.named_parameters() if not p.requires_grad}
    assert frozen == {"trunk.body.0.0.weight", "trunk.body.0.1.weight", "trunk.body.0.1.bias",
                      "trunk.body.0.2.weight", "trunk.fc.weight", "trunk.fc.bias"}
    with pytest.raises(ConfigError, match="'trunk.nope' matches no parameter"):
        Trainer(_tiny_cfg(tmp_path / "b", **{"model.freeze": '["trunk.nope"]'}))


def test_head_only_recipe_wraps_the_plugin_trainer(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    save_file(TinyFaceNet().state_dict(), str(tmp_path / "t.safetensors"))
    cfg = _tiny_cfg(tmp_path, **{
        "run.recipe": "head_only", "model.pretrained": str(tmp_path / "t.safetensors"),
        "head_only": "{epochs = 2, pairs_per_epoch = 64, batch_size = 16, channels = 8}"})
    summary = train(cfg)
    assert summary["recipe"] == "head_only" and len(summary["history"]) == 2
    head = load_file(str(tmp_path / "out" / "head.safetensors"))
    assert head["adapter.conv1x1.0.weight"].shape == (8, 16, 1, 1)
    with pytest.raises(ConfigError, match="unknown key head_only.epochz"):
        train(_tiny_cfg(tmp_path / "c", **{
            "run.recipe": "head_only", "model.pretrained": str(tmp_path / "t.safetensors"),
            "head_only": "{epochz = 2}"}))


def test_head_only_features_come_from_the_feature_cache(tmp_path, monkeypatch):
    """A source that names its files and its aligner (as LFW people do) goes through the
    feature cache: the same grids and embeddings as computed in memory, and a second call
    does not align (or run the backbone on) anything."""
    from types import SimpleNamespace

    from xcos_xai.training.engine import source_features

    monkeypatch.setenv("XCOS_XAI_CACHE", str(tmp_path / "cache"))
    folders = IdentityFolders(write_identity_folders(tmp_path / "data", n_identities=3,
                                                     n_images=2, size=32))

    class Aligner:  # the synthetic images are the chips already
        chip_size, calls = 32, 0

        def config(self):
            return {"stub": "synthetic chips"}

        def align_many(self, paths, workers=1, progress=False):
            Aligner.calls += len(paths)
            return [SimpleNamespace(chip=np.asarray(Image.open(p).convert("RGB")))
                    for p in paths]

    people = SimpleNamespace(paths=folders.paths, labels=folders.labels, aligner=Aligner())
    torch.manual_seed(0)
    backbone = TinyFaceNet().eval()
    ref_grids, ref_embs = source_features(backbone, folders, "cpu", progress=False)
    grids, embs = source_features(backbone, people, "cpu", progress=False)
    assert Aligner.calls == 6 and grids.dtype == ref_grids.dtype == torch.float16
    torch.testing.assert_close(grids, ref_grids)
    torch.testing.assert_close(embs, ref_embs)
    again, _ = source_features(backbone, people, "cpu", progress=False)
    assert Aligner.calls == 6 and torch.equal(again, grids)  # answered by the cache
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 1
