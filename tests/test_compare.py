"""tools/compare.py: arguments, the protocol, the run configs, the table, JSON and picture;
one slow end-to-end comparison (IntroVAE and MMagic's DCGAN, 2 seeds) through the real tool."""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
from mmengine.config import Config

from _images import write_image_folder
from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import compare as cmp  # noqa: E402

PROTOCOL = cmp.load_protocol(cmp.DEFAULT_PROTOCOL)


def test_default_configs_are_the_fashionmnist_four_trained_equally_long():
    args = cmp.parse_args([])
    assert args.configs == cmp.DEFAULT_CONFIGS and args.seeds == [0, 1]
    cfgs = [Config.fromfile(cmp.resolve(c)) for c in args.configs]
    assert [c.model.type for c in cfgs] == ['IntroVAE', 'IntroVAE', 'SoftIntroVAE', 'DCGAN']
    assert len({c.train_cfg.max_iters for c in cfgs}) == 1
    assert len({c.train_dataloader.batch_size for c in cfgs}) == 1
    assert len({c.train_dataloader.dataset.data_root for c in cfgs}) == 1


@pytest.mark.parametrize('argv, message', [
    (['--iters', '0'], '--iters'),
    (['--seconds', '0'], '--seconds'),
    (['--fake-nums', '3'], '--fake-nums'),
    (['--seeds', '1', '1'], 'repeats'),
    (['configs/dcgan_emoji64.py', '--labels', 'a', 'b'], '--labels'),
    (['configs/no_such.py'], 'no_such.py'),
    (['configs/dcgan_emoji64.py', 'configs/dcgan_emoji64.py'], 'twice'),
])
def test_bad_arguments_are_refused_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit):
        cmp.parse_args(argv)
    assert message in capsys.readouterr().err


def test_protocol_names_metrics_and_subsets_them():
    assert list(PROTOCOL['sample']) == ['Inception', 'SWD', 'MS_SSIM']
    assert list(PROTOCOL['reconstruction']) == ['PSNR', 'SSIM', 'KL']
    sub = cmp.load_protocol(cmp.DEFAULT_PROTOCOL, ['SWD', 'PSNR'])
    assert [c[0] for c in cmp.columns(sub)] == ['SWD/avg', 'rec/PSNR']
    with pytest.raises(SystemExit, match='IS'):
        cmp.load_protocol(cmp.DEFAULT_PROTOCOL, ['IS'])


def test_a_metric_is_added_to_every_model_by_one_protocol_entry(tmp_path):
    path = tmp_path / 'protocol.py'
    path.write_text(
        f"_base_ = ['{osp.join(REPO, cmp.DEFAULT_PROTOCOL)}']\n"
        "sample_metrics = dict(KID=dict(metric=dict(type='SomeKID', prefix='KID', "
        "fake_nums=500), columns=[('KID/kid', 'KID x1e3', '{:.2f}', 'lower')]))\n")
    protocol = cmp.load_protocol(str(path))
    assert 'KID/kid' in [c[0] for c in cmp.columns(protocol)]
    for name in ('dcgan_emoji64.py', 'introvae_emoji64.py'):
        cfg = cmp.run_config(f'configs/{name}', 0, str(tmp_path), protocol, fake_nums=10)
        kid = [m for m in cfg.test_evaluator.metrics if m['type'] == 'SomeKID']
        assert len(kid) == 1 and kid[0]['fake_nums'] == 10


def test_run_config_of_a_gan_without_encoder(tmp_path):
    cfg = cmp.run_config('configs/dcgan_emoji64.py', 3, str(tmp_path), PROTOCOL, seconds=90)
    types = [m['type'] for m in cfg.test_evaluator.metrics]
    assert types == ['IntroVAEInceptionMetrics', 'IntroVAESWD', 'MS_SSIM']  # no reconstruction metrics
    swd = cfg.test_evaluator.metrics[1]
    assert tuple(swd['image_shape']) == (3, 64, 64)
    assert cfg.randomness.seed == 3 and cfg.work_dir == str(tmp_path)
    assert cfg.train_cfg.max_iters == cmp.UNLIMITED_ITERS  # time alone ends it
    assert cfg.custom_hooks[-1] == dict(type='TrainTimeBudgetHook', budget_s=90)
    assert cfg.val_cfg is None and cfg.val_evaluator is None
    assert 'mmintrovae' in cfg.custom_imports['imports']


def test_run_config_of_an_introvae_scales_warmup_and_evaluates_reconstructions(tmp_path):
    cfg = cmp.run_config('configs/introvae_fashionmnist32.py', 0, str(tmp_path), PROTOCOL,
                         iters=80, fake_nums=16, test_images=32)
    metrics = cfg.test_evaluator.metrics
    assert [m['type'] for m in metrics] == ['PSNR', 'SSIM', 'IntroVAEKL', 'IntroVAEInceptionMetrics',
                                            'IntroVAESWD', 'MS_SSIM']
    assert {m['fake_nums'] for m in metrics if 'fake_nums' in m} == {16}
    assert tuple(metrics[4]['image_shape']) == (1, 32, 32)
    assert cfg.train_cfg.max_iters == 80 and cfg.model.vae_warmup_iters == 20  # 200 of 800
    assert cfg.default_hooks.checkpoint.interval == 80
    assert cfg.custom_hooks[-1] == dict(type='TrainTimeBudgetHook', budget_s=None)
    assert cfg.test_dataloader.dataset.max_images == 32
    # a run config is a plain file tools/train.py can read back
    cfg.dump(str(tmp_path / 'c.py'))
    assert Config.fromfile(str(tmp_path / 'c.py')).model.vae_warmup_iters == 20


def test_mmagic_configs_are_accepted_as_they_are(tmp_path):
    config = 'mmagic::dcgan/dcgan_1xb128-300kiters_celeba-cropped-64.py'
    assert cmp.config_key(config) == 'dcgan_1xb128-300kiters_celeba-cropped-64'
    cfg = cmp.run_config(config, 0, str(tmp_path), PROTOCOL, iters=5)
    assert cfg.model.type == 'DCGAN' and cfg.train_cfg.max_iters == 5
    assert tuple(cfg.test_evaluator.metrics[1]['image_shape']) == (3, 64, 64)


def _fake_runs():
    runs = []
    for label, enc, fids in [('IntroVAE', True, [100.0, 110.0]), ('DCGAN', False, [90.0, 94.0])]:
        for seed, fid in zip((0, 1), fids):
            metrics = {'FID/fid': fid, 'SWD/avg': 20.0 + seed, 'MS-SSIM/avg': 0.25,
                       'KID/mean': fid / 1000, 'PR/precision': 0.5, 'PR/recall': 0.4}
            if enc:
                metrics.update({'rec/PSNR': 18.0, 'kl/kl_fake_minus_real': -0.01})
            runs.append(dict(label=label, config=f'configs/{label.lower()}.py', seed=seed,
                             has_encoder=enc, iters=100 + seed * 10, train_seconds=60.0,
                             images_per_second=(100 + seed * 10) * 32 / 60.0, metrics=metrics))
    return runs


def test_summary_table_and_json_from_fake_results(tmp_path):
    cols = cmp.columns(PROTOCOL)
    summary = cmp.summarise(_fake_runs(), cols)
    assert [s['label'] for s in summary] == ['IntroVAE', 'DCGAN']
    fid = summary[0]['metrics']['FID/fid']
    assert fid['mean'] == 105.0 and fid['std'] == pytest.approx(7.0711, abs=1e-4)
    assert fid['values'] == [100.0, 110.0]
    assert 'rec/PSNR' not in summary[1]['metrics']
    assert summary[1]['iters'] == dict(mean=105.0, std=pytest.approx(7.0711, abs=1e-4))

    settings = dict(seconds=60.0, iters=None, seeds=[0, 1], fake_nums=500, test_images=85,
                    machine='2 CPU cores')
    text = open(cmp.write_table(summary, cols, settings, tmp_path / 't.md')).read()
    lines = [line for line in text.splitlines() if line.startswith('| ')]
    assert len(lines) == 3
    assert 'images/s' in lines[0] and 'FID (lower)' in lines[0] and 'train wall time' in lines[0]
    intro = lines[1].split(' | ')
    assert intro[0] == '| IntroVAE' and '105.0 ± 7.1' in lines[1] and '| 60 ± 0 |' in lines[1]
    assert '56.0 ± 3.8' in lines[1]  # images/s: 3200/60 and 3520/60
    assert lines[2].count('n/a') == 4  # PSNR, SSIM, KL real, KL samples - real: no encoder
    assert '-0.0' not in text and '60 s of training' in text and 'seeds 0, 1' in text

    one = cmp.summarise(_fake_runs()[:1], cols)
    assert cmp.fmt(one[0]['metrics']['FID/fid']) == '100.0'  # one seed: no spread


def test_side_by_side_picture_with_a_model_without_encoder(tmp_path):
    from PIL import Image
    grid = np.full((66, 66, 3), 40, np.uint8)
    rows = [[grid, grid], [grid, None]]
    path = cmp.side_by_side(rows, ['IntroVAE', 'DCGAN'], tmp_path / 's.png',
                            row_titles=['samples', 'reconstructions'])
    img = np.asarray(Image.open(path))
    assert img.shape[1] >= 2 * 2 * 66 and img.shape[0] >= 2 * 2 * 66
    dark = (img < 50).all(axis=2)
    # three zoomed grids pasted: 3 * 132 * 132 pixels of value 40, the blank panel none
    assert dark.sum() == pytest.approx(3 * 132 * 132, rel=0.05)


def test_samples_of_a_dcgan_model_are_seeded_images():
    from mmintrovae.apis import init_model
    model = init_model(osp.join(REPO, 'configs', 'dcgan_fashionmnist32.py'))
    a = cmp.sample_images(model, 6, seed=1)
    b = cmp.sample_images(model, 6, seed=1)
    c = cmp.sample_images(model, 6, seed=2)
    assert a.shape == (6, 32, 32, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 0


def test_samples_of_an_aggregate_prior_model_decode_its_prior(tiny_introvae):
    """The picture decodes the latents the model's metrics sample (here a prior centred
    at 3), not N(0, I)."""
    import torch
    from mmintrovae.apis.sampling import decode, prior_noise
    from mmintrovae.models import IntroVAE
    base, _ = tiny_introvae()
    model = IntroVAE(encoder=base.encoder, generator=base.generator, latent_prior='aggregate',
                     data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * 3,
                                            std=[255.0] * 3)).eval()
    prior = model.aggregate_posterior
    prior.mean.fill_(3.0)
    prior.second_moment.copy_(torch.outer(prior.mean, prior.mean) + 0.01 * torch.eye(8))
    from mmintrovae.apis.images import to_uint8
    with torch.no_grad():
        want = to_uint8(model, decode(model, prior_noise(model, 4, seed=1)))
        standard = to_uint8(model, decode(model, prior_noise(model, 4, seed=1,
                                                             prior='standard')))
    got = cmp.sample_images(model, 4, seed=1)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, standard)


@pytest.mark.slow
def test_end_to_end_introvae_and_dcgan_two_seeds(tmp_path):
    """The real tool: 2 configs (one MMagic DCGAN), 2 seeds, 3 iterations, 8 images."""
    train = write_image_folder(str(tmp_path / 'train'), 16, 32, mode='L', seed=0)
    test = write_image_folder(str(tmp_path / 'test'), 8, 32, mode='L', seed=1)
    out = tmp_path / 'out'
    opts = [f'train_dataloader.dataset.data_root={train}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'test_dataloader.dataset.data_root={test}', 'test_dataloader.batch_size=4',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'custom_hooks.1.interval=1000', 'default_hooks.logger.interval=1']
    argv = ['configs/introvae_fashionmnist32.py', 'configs/dcgan_fashionmnist32.py',
            '--labels', 'IntroVAE', 'DCGAN', '--iters', '3', '--seconds', '600',
            '--seeds', '0', '1', '--fake-nums', '8', '--test-images', '8', '--out', str(out),
            '--cfg-options', *opts]
    summary = cmp.main(argv)
    assert [s['label'] for s in summary] == ['IntroVAE', 'DCGAN']
    data = json.loads((out / 'comparison.json').read_text())
    assert len(data['runs']) == 4
    for r in data['runs']:
        assert r['iters'] == 3 and not r['stopped_by_budget'] and r['train_seconds'] > 0
        assert np.isfinite(r['metrics']['FID/fid']) and r['metrics']['SWD/avg'] > 0
        assert ('rec/PSNR' in r['metrics']) == (r['label'] == 'IntroVAE')
    intro, dcgan = summary
    assert intro['metrics']['FID/fid']['std'] is not None  # two seeds: a spread
    assert len(set(intro['metrics']['FID/fid']['values'])) == 2  # seeds train differently
    table = (out / 'comparison.md').read_text()
    assert '| IntroVAE |' in table and '| DCGAN |' in table and ' ± ' in table
    from PIL import Image
    img = Image.open(out / 'samples.png')
    # two columns of 8x8 sample grids (274 px, zoomed x2); below, the 8 test images above
    # their reconstructions (2 grid rows of 34 px) for IntroVAE only
    assert img.width > 2 * 2 * 274 and 2 * 274 + 2 * 2 * 34 < img.height < 2 * 2 * 274
    # a second call reuses every run instead of training again
    before = (out / 'introvae_fashionmnist32' / 'seed0' / 'result.json').stat().st_mtime
    cmp.main(argv)
    assert (out / 'introvae_fashionmnist32' / 'seed0' / 'result.json').stat().st_mtime == before
    # so does a call with one of the seeds (seeds trained by separate calls are combined)
    seeds_at = argv.index('--seeds')
    labels_at = argv.index('--labels')
    argv[labels_at + 1] = 'Renamed'  # a reused run takes this call's name
    summary = cmp.main(argv[:seeds_at + 1] + ['1'] + argv[seeds_at + 3:])
    assert len(summary[0]['metrics']['FID/fid']['values']) == 1
    assert summary[0]['label'] == 'Renamed'
    assert (out / 'introvae_fashionmnist32' / 'seed0' / 'result.json').stat().st_mtime == before


def test_runs_of_separate_calls_are_reused_whatever_the_other_seeds():
    run = dict(seconds=540.0, iters=None, seeds=[1], fake_nums=1000, config='a.py')
    assert cmp.same_run_settings(run, dict(run, seeds=[0, 1]))
    assert not cmp.same_run_settings(run, dict(run, seeds=[0, 1], fake_nums=500))
    assert not cmp.same_run_settings(None, run)


def test_auto_judges_a_model_by_its_ema_generator_where_it_keeps_one(tmp_path):
    assert PROTOCOL['sample_model'] == 'auto'
    ema = {'model.ema_config': dict(type='ExponentialMovingAverage', momentum=0.01,
                                    update_buffers=True)}
    for options, expected in [({}, 'orig'), (ema, 'ema')]:
        cfg = cmp.run_config('configs/introvae_dcgan_fashionmnist32.py', 0, str(tmp_path),
                             PROTOCOL, iters=10, cfg_options=options)
        judged = {m['type']: m['sample_model'] for m in cfg.test_evaluator.metrics
                  if 'sample_model' in m}
        assert judged == {'IntroVAEInceptionMetrics': expected, 'IntroVAESWD': expected,
                          'MS_SSIM': expected}


def test_a_protocol_asking_for_an_ema_the_model_lacks_names_the_key(tmp_path):
    path = tmp_path / 'protocol.py'
    path.write_text(f"_base_ = ['{osp.join(REPO, cmp.DEFAULT_PROTOCOL)}']\nsample_model = 'ema'\n")
    protocol = cmp.load_protocol(str(path))
    assert protocol['sample_model'] == 'ema'
    with pytest.raises(SystemExit, match='ema_config'):
        cmp.run_config('configs/dcgan_fashionmnist32.py', 0, str(tmp_path), protocol, iters=5)
    path.write_text(f"_base_ = ['{osp.join(REPO, cmp.DEFAULT_PROTOCOL)}']\nsample_model = 'best'\n")
    with pytest.raises(SystemExit, match="'auto', 'orig' or 'ema'"):
        cmp.load_protocol(str(path))


def test_a_failed_evaluation_is_redone_without_training_again(tmp_path, monkeypatch):
    from mmintrovae.engine.time_budget import TRAIN_TIME_FILE
    calls = []

    def fake_run(cmd, what, log_path=None):
        calls.append(cmd[1])
        if cmd[1] == 'tools/train.py':
            work = cmd[cmd.index('--work-dir') + 1]
            os.makedirs(work, exist_ok=True)
            (tmp_path / 'ckpt.pth').write_bytes(b'weights')
            with open(osp.join(work, 'last_checkpoint'), 'w') as f:
                f.write(str(tmp_path / 'ckpt.pth'))
            with open(osp.join(work, TRAIN_TIME_FILE), 'w') as f:
                json.dump(dict(iters=12, seconds=3.0, stopped_by_budget=False), f)
            return 7.0
        if len(calls) == 2:  # the first evaluation fails after training
            raise SystemExit('[compare] evaluation failed')
        with open(cmd[cmd.index('--out') + 1], 'w') as f:
            json.dump({'KID/mean': 0.1}, f)
        return 2.0

    monkeypatch.setattr(cmp, 'run', fake_run)
    args = cmp.parse_args(['configs/introvae_dcgan_fashionmnist32.py', '--iters', '12'])
    settings = dict(iters=12, seconds=None, fake_nums=8, config='x.py')
    run_dir = str(tmp_path / 'run')
    call = lambda s: cmp.train_and_evaluate(  # noqa: E731
        'configs/introvae_dcgan_fashionmnist32.py', 'IntroVAE', 0, run_dir, s, args, PROTOCOL)
    with pytest.raises(SystemExit):
        call(settings)
    row = call(settings)
    assert calls == ['tools/train.py', 'tools/test.py', 'tools/test.py']  # trained once
    assert row['iters'] == 12 and row['train_process_seconds'] == 7.0
    assert row['metrics'] == {'KID/mean': 0.1}
    os.remove(osp.join(run_dir, 'result.json'))
    call(dict(settings, fake_nums=16))  # other settings: another run, trained again
    assert calls[3:] == ['tools/train.py', 'tools/test.py']

