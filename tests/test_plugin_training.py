"""Plug-in head training on features: the sampler and the loss."""

from __future__ import annotations

import torch

from xcos_xai.training.plugin import PairSampler, PluginConfig, train_plugin_head


def test_sampler_pairs_are_what_they_claim():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4])  # 2, 3, 4 are single-image identities
    sampler = PairSampler(labels, generator=torch.Generator().manual_seed(0))
    a, b = sampler.sample(4000)
    same = labels[a] == labels[b]
    assert (a != b).all()  # a genuine pair never repeats an image
    assert abs(same.float().mean().item() - 0.5) < 0.05
    singles = torch.isin(labels[a[same]], torch.tensor([2, 3, 4]))
    assert not singles.any()  # singletons only in impostor pairs, and no endless loop
    again = PairSampler(labels, generator=torch.Generator().manual_seed(0)).sample(4000)
    assert torch.equal(again[0], a) and torch.equal(again[1], b)  # seeded


def test_head_learns_to_match_a_teacher_cosine():
    torch.manual_seed(0)
    n, ids = 600, 60
    labels = torch.arange(n) % ids
    centres = torch.randn(ids, 16)
    # Grids whose cells carry the identity plus noise; the teacher is a noisy embedding.
    grids = centres[labels].view(n, 16, 1, 1).repeat(1, 1, 3, 3) + 0.3 * torch.randn(n, 16, 3, 3)
    emb = centres[labels] + 0.2 * torch.randn(n, 16)
    config = PluginConfig(grid="3x3", channels=8, epochs=8, pairs_per_epoch=2048,
                          batch_size=256, lr=3e-3)
    torch.manual_seed(config.seed)
    untrained = config.build_head(16, (3, 3)).eval()  # the same initial weights
    head, history = train_plugin_head(grids, emb, labels, config, progress=False)
    a, b = PairSampler(labels, generator=torch.Generator().manual_seed(1)).sample(1000)
    target = torch.nn.functional.cosine_similarity(emb[a], emb[b])
    with torch.no_grad():
        score = head(grids[a], grids[b]).score
        before = untrained(grids[a], grids[b]).score
    mse, mse_before = ((score - target) ** 2).mean(), ((before - target) ** 2).mean()
    assert mse < 0.7 * mse_before
    assert torch.corrcoef(torch.stack([score, target]))[0, 1] > 0.85
    assert len(history) == config.epochs


def test_identity_loss_option_runs_and_trains_the_adapter():
    torch.manual_seed(1)
    labels = torch.arange(200) % 20
    grids = torch.randn(200, 8, 2, 2)
    emb = torch.randn(200, 4)
    config = PluginConfig(grid="2x2", channels=4, epochs=1, pairs_per_epoch=256,
                          batch_size=64, id_loss_weight=0.5)
    head, _ = train_plugin_head(grids, emb, labels, config, progress=False)
    untrained = config.build_head(8, (2, 2))
    assert not torch.allclose(head.adapter.conv1x1[0].weight, untrained.adapter.conv1x1[0].weight)
