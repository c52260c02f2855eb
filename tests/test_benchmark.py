"""tools/benchmark.py and mmintrovae.utils.benchmark."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from _images import write_image_folder
from mmintrovae.utils import benchmark as bench

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

CASE_FIELDS = {
    'config', 'image_size', 'batch_size', 'mode', 'update_mode', 'device', 'channels',
    'iters', 'warmup', 'repeats', 'loadavg_before', 'loadavg_after', 'params_m',
    's_per_iter_median', 's_per_iter_min', 's_per_iter_max', 's_per_iter_runs', 'spread_pct',
    'cpu_s_per_iter_median', 'images_per_s', 'gflop_per_iter', 'gflops', 'matmul_gflops',
    'pct_of_matmul', 'matmul_gflop_per_cpu_s', 'gflop_per_cpu_s', 'pct_of_matmul_cpu',
    'peak_memory_gib', 'peak_memory_kind', 'data', 'runner'
}
DATA_FIELDS = {'outside_step_pct', 'num_workers', 'persistent_workers', 'pin_memory', 'fetch_s_per_iter',
               'step_s_per_iter', 'wait_share_pct', 'load_cpu_s_per_batch', 'load_cpu_share_pct'}
RUNNER_FIELDS = {'s_per_iter_median', 'bare_loop_s_per_iter_median', 'overhead_pct',
                 'overhead_cpu_pct', 'outside_step_pct', 'overhead_paired_pct'}


@pytest.mark.parametrize('size, expected', [
    (256, [32, 64, 128, 256, 512, 512]),
    (128, [64, 128, 256, 512, 512]),
    (32, [256, 512, 512]),
    (1024, [16, 16, 32, 64, 128, 256, 512, 512]),
])
def test_adapt_channels(size, expected):
    assert bench.adapt_channels((32, 64, 128, 256, 512, 512), size) == expected


def test_load_config_sets_the_case_and_switches_the_warmup_off():
    cfg = bench.load_config(osp.join(REPO, 'configs/introvae_celebahq256.py'), 128, 4,
                            'simultaneous', data_root=osp.join(REPO, 'data/emoji/train'))
    assert cfg.model.architecture.image_size == 128
    assert cfg.model.architecture.channels == [64, 128, 256, 512, 512]
    assert cfg.train_dataloader.dataset.image_size == 128
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.model.update_mode == 'simultaneous' and cfg.model.vae_warmup_iters == 0
    assert cfg.train_dataloader.dataset.data_root.endswith('data/emoji/train')
    with pytest.raises(ValueError, match='mode'):
        bench.load_config(osp.join(REPO, 'configs/introvae_celebahq256.py'), mode='fast')


@pytest.mark.slow
def test_benchmark_tool_end_to_end(tmp_path):
    """Both modes at 32x32, batch 2, one timed iteration, runner included: every field."""
    out = tmp_path / 'bench.json'
    # A generated folder: a clean checkout has no prepared data.
    images = write_image_folder(str(tmp_path / 'images'), 8, 32, mode='L')
    proc = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--image-size', '32', '--batch-size', '2',
         '--data-root', images,
         '--mode', 'paper', 'simultaneous', '--iters', '1', '--warmup', '1', '--repeats', '2',
         '--runner', '--markdown', '--out', str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {'machine', 'loadavg_start', 'loadavg_end', 'results', 'speedups'} <= set(report)
    assert [r['update_mode'] for r in report['results']] == ['alternating', 'simultaneous']
    for r in report['results']:
        assert CASE_FIELDS <= set(r), CASE_FIELDS - set(r)
        assert DATA_FIELDS <= set(r['data']) and RUNNER_FIELDS <= set(r['runner'])
        assert r['s_per_iter_median'] > 0 and r['gflop_per_iter'] > 0
        assert r['peak_memory_gib'] > 0 and len(r['s_per_iter_runs']) == 2
    # 5 + 2 against 3 + 2 passes: fewer FLOPs in the simultaneous mode
    paper, simultaneous = report['results']
    assert simultaneous['gflop_per_iter'] < paper['gflop_per_iter']
    assert report['speedups'][0]['flop_ratio'] > 1
    assert 'simultaneous/paper images/s' in proc.stdout
    assert '| 32 | 2 | paper |' in proc.stdout and '| 32 | 2 | simultaneous |' in proc.stdout
    # --report prints the tables of a saved file without measuring anything
    again = subprocess.run([sys.executable, 'tools/benchmark.py', '--report', str(out)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for r in report['results']:
        assert f"| 32 | 2 | {r['mode']} | {r['s_per_iter_median']:.3g} (" in again.stdout


def test_simultaneous_fashion_mnist_recipe_differs_only_in_the_update_mode():
    """The quality comparison of the two modes trains these two configs."""
    from mmengine.config import Config
    paper = Config.fromfile(osp.join(REPO, 'configs/introvae_fashionmnist32.py'))
    simultaneous = Config.fromfile(
        osp.join(REPO, 'configs/introvae_fashionmnist32_simultaneous.py'))
    assert simultaneous.model.pop('update_mode') == 'simultaneous'
    assert paper.model.get('update_mode', 'alternating') == 'alternating'
    paper.model.pop('update_mode', None)
    assert simultaneous.to_dict() == paper.to_dict()


# ------------------------------------------------------- precision and memory format
def amp_dtypes(cfg):
    return {name: (sub.get('type'), sub.get('dtype')) for name, sub in cfg.optim_wrapper.items()
            if isinstance(sub, dict) and 'optimizer' in sub}


@pytest.mark.parametrize('precision, expected', [
    ('fp32', ('OptimWrapper', None)), ('tf32', ('OptimWrapper', None)),
    ('fp16', ('IntroVAEAmpOptimWrapper', 'float16')),
    ('bf16', ('IntroVAEAmpOptimWrapper', 'bfloat16'))])
def test_load_config_sets_the_precision_of_both_optim_wrappers(precision, expected):
    cfg = bench.load_config(osp.join(REPO, 'configs/introvae_emoji64.py'), 32, 2,
                            data_root=REPO, precision=precision)
    wrappers = amp_dtypes(cfg)
    assert set(wrappers) == {'encoder', 'generator'}
    for name, (kind, dtype) in wrappers.items():
        assert (kind or 'OptimWrapper', dtype) == expected, name


def test_load_config_sets_the_memory_format_and_refuses_unknown_values():
    config = osp.join(REPO, 'configs/introvae_celebahq256.py')  # channels_last not set
    load = lambda **kw: bench.load_config(config, 32, 2, data_root=REPO, **kw)  # noqa: E731
    assert load(memory_format='channels_last').model.channels_last is True
    assert load(memory_format='contiguous').model.channels_last is False
    assert 'channels_last' not in load(memory_format='config').model
    emoji = bench.load_config(osp.join(REPO, 'configs/introvae_emoji64.py'), data_root=REPO)
    assert emoji.model.channels_last is True  # 'config' keeps the CPU recipe's NHWC
    with pytest.raises(ValueError, match='precision'):
        load(precision='fp8')
    with pytest.raises(ValueError, match='memory_format'):
        load(memory_format='nhwc')


def test_precision_flags_switch_tf32_and_restore_them():
    import torch
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with bench.precision_flags('fp32', torch.device('cpu')):  # plain fp32: TF32 off
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with bench.precision_flags('bf16', torch.device('cpu')):
            assert not torch.backends.cudnn.allow_tf32
        for precision in ('tf32', 'fp16'):  # CUDA-only
            with pytest.raises(ValueError, match=f"'{precision}' needs a CUDA device"):
                with bench.precision_flags(precision, torch.device('cpu')):
                    pass
        assert torch.backends.cudnn.allow_tf32  # restored after a refusal too
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_matmul_roofline_runs_in_the_requested_dtype(monkeypatch):
    import torch
    seen = []
    real_mm = torch.mm

    def mm(a, b, **kwargs):
        seen.append(a.dtype)
        return real_mm(a, b, **kwargs)

    monkeypatch.setattr(torch, 'mm', mm)
    wall, cpu = bench.matmul_gflops(torch.device('cpu'), n=64, repeats=2, dtype=torch.bfloat16)
    assert wall > 0 and cpu > 0 and set(seen) == {torch.bfloat16}


def test_benchmark_tool_multiplies_cases_by_precision_and_memory_format():
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import importlib
    tool = importlib.import_module('benchmark')
    args = tool.parse_args(['--image-size', '128', '256', '--batch-size', '16',
                            '--precision', 'fp32', 'tf32', 'fp16', 'bf16',
                            '--memory-format', 'contiguous', 'channels_last'])
    cases = list(tool.cases(args))
    assert len(cases) == 2 * 4 * 2
    assert {(c[1], c[4], c[5]) for c in cases} == {
        (s, p, m) for s in (128, 256) for p in ('fp32', 'tf32', 'fp16', 'bf16')
        for m in ('contiguous', 'channels_last')}
    with pytest.raises(SystemExit):
        tool.parse_args(['--image-size', '32', '--precision', 'fp64'])
