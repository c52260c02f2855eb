"""Distributed training and evaluation on this CPU-only machine: 2 processes, gloo.

Fast tests run two forked ranks in-process (a file:// rendezvous): the CPU SyncBN, the
model wrapper, the launcher's process group and the divergence guard's agreement.

The slow tests launch ``tools/dist_train.sh`` and ``tools/dist_test.sh`` with 2 processes
and compare them with 1-process runs of ``tools/train.py`` / ``tools/test.py``.
"""
import glob
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys
import textwrap
import traceback

import pytest
import torch

from _images import write_image_folder

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(REPO, 'tests')


# ----------------------------------------------------------------- two forked ranks
def _rank_main(fn, rank, init_file, out, env):
    try:
        os.environ.update(env)
        torch.set_num_threads(1)
        import torch.distributed as dist
        if fn.__name__ != '_launcher_slurm':  # that one makes its own process group
            dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                                    world_size=2)
        result = fn(rank)
        with open(out, 'wb') as f:
            pickle.dump(('ok', result), f)
    except BaseException:  # noqa: B902  (reported by the parent)
        with open(out, 'wb') as f:
            pickle.dump(('error', traceback.format_exc()), f)
    finally:
        os._exit(0)


def two_ranks(fn, tmp_path, env=None, timeout=120):
    """Run ``fn(rank)`` in two forked processes sharing a gloo group; their results."""
    import multiprocessing as mp

    import mmintrovae.engine.distributed  # noqa: F401  (imported once, before the fork)
    import mmintrovae.models  # noqa: F401
    ctx = mp.get_context('fork')
    procs, outs = [], []
    for rank in range(2):
        out = tmp_path / f'result{rank}.pkl'
        rank_env = {k: v.format(rank=rank) for k, v in (env or {}).items()}
        proc = ctx.Process(target=_rank_main,
                           args=(fn, rank, str(tmp_path / 'rendezvous'), str(out), rank_env))
        proc.start()
        procs.append(proc)
        outs.append(out)
    for proc in procs:
        proc.join(timeout)
    hung = [p for p in procs if p.is_alive()]
    for proc in hung:
        proc.kill()
        proc.join()
    assert not hung, 'a rank hung (a collective that the other rank never joined)'
    results = []
    for out in outs:
        status, value = pickle.loads(out.read_bytes())
        assert status == 'ok', value
        results.append(value)
    return results


# --------------------------------------------------------------------- CPU SyncBN
GLOBAL = torch.Generator().manual_seed(3)
X = torch.randn(6, 3, 5, 5, generator=GLOBAL) * 2 + 1  # 3 images per rank
UPSTREAM = torch.randn(6, 3, 5, 5, generator=GLOBAL)


def _sync_bn_rank(rank):
    import torch.distributed as dist

    from mmintrovae.engine.distributed import CPUSyncBatchNorm
    bn = CPUSyncBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = X[3 * rank:3 * rank + 3].clone().requires_grad_()
    y = bn(x)
    (y * UPSTREAM[3 * rank:3 * rank + 3]).sum().backward()
    grads = torch.cat([bn.weight.grad, bn.bias.grad])
    dist.all_reduce(grads)  # what DDP does (up to its division by the world size)
    return dict(y=y.detach(), x_grad=x.grad, param_grads=grads,
                running=(bn.running_mean.clone(), bn.running_var.clone()))


def test_cpu_sync_batchnorm_is_one_batchnorm_over_the_global_batch(tmp_path):
    """torch.nn.SyncBatchNorm refuses CPU tensors; CPUSyncBatchNorm gives, per rank, the
    outputs, input gradients, parameter gradients (summed over ranks) and running
    statistics of a single BatchNorm over both ranks' images."""
    ranks = two_ranks(_sync_bn_rank, tmp_path)
    ref = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        ref.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = X.clone().requires_grad_()
    y = ref(x)
    (y * UPSTREAM).sum().backward()
    for rank, got in enumerate(ranks):
        part = slice(3 * rank, 3 * rank + 3)
        torch.testing.assert_close(got['y'], y[part].detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got['x_grad'], x.grad[part], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got['param_grads'], torch.cat([ref.weight.grad,
                                                                  ref.bias.grad]),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got['running'][0], ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got['running'][1], ref.running_var, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ model wrapper
def _tiny_model():
    from mmintrovae.models import IntroVAE
    torch.manual_seed(0)
    return IntroVAE(encoder=dict(type='IntroVAEEncoder'), generator=dict(type='IntroVAEGenerator'),
                    architecture=dict(image_size=32, channels=(8, 16, 16), latent_dim=8,
                                      image_channels=1),
                    data_preprocessor=dict(type='DataPreprocessor', mean=[0.0], std=[255.0]))


def _wrapper_rank(rank):
    from torch.nn.parallel import DistributedDataParallel

    from mmintrovae.engine.distributed import (CPUSyncBatchNorm,
                                               IntroVAEDistributedDataParallel)
    model = _tiny_model()
    clean_keys = list(model.state_dict())
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # sync_bn='torch'
    # Runner.wrap_model always passes device_ids=[LOCAL_RANK]
    wrapped = IntroVAEDistributedDataParallel(module=model, device_ids=[rank])
    inner = wrapped.module
    state = inner.state_dict()  # what Runner.save_checkpoint saves
    inner.load_state_dict(reference, strict=True)  # torch's loader on the wrapped model
    return dict(
        ddp=[isinstance(inner.encoder, DistributedDataParallel),
             isinstance(inner.generator, DistributedDataParallel)],
        sync_bn=sum(isinstance(m, CPUSyncBatchNorm) for m in inner.modules()),
        torch_sync_bn=sum(isinstance(m, torch.nn.SyncBatchNorm) for m in inner.modules()),
        keys_match=list(state) == clean_keys)


def test_wrapper_runs_on_cpu_with_sync_bn_and_saves_plain_keys(tmp_path):
    """Runner.wrap_model's device_ids and torch SyncBatchNorm both make DDP raise on CPU;
    the wrapper drops the former, swaps the latter for CPUSyncBatchNorm, and saves
    state-dict keys without DDP's 'module.' level (loadable by a 1-process model)."""
    for result in two_ranks(_wrapper_rank, tmp_path):
        assert result['ddp'] == [True, True]
        assert result['sync_bn'] > 0 and result['torch_sync_bn'] == 0
        assert result['keys_match']


def test_static_graph_is_refused():
    from mmintrovae.engine.distributed import IntroVAEDistributedDataParallel
    with pytest.raises(ValueError, match='static_graph'):
        IntroVAEDistributedDataParallel(module=torch.nn.Linear(2, 2), static_graph=True)


def _launcher_slurm(rank):
    import torch.distributed as dist
    from mmengine.dist import get_dist_info

    from mmintrovae.engine.distributed import init_cpu_process_group
    init_cpu_process_group('slurm', dict(backend='nccl', timeout=60))
    t = torch.tensor([rank + 1.0])
    dist.all_reduce(t)
    return dict(dist=get_dist_info(), backend=dist.get_backend(), sum=t.item(),
                local_rank=os.environ['LOCAL_RANK'])


def test_cpu_process_group_from_slurm_variables(tmp_path):
    """The 'slurm' launcher's variables give rank and world size; NCCL (the recipes'
    backend) becomes gloo on a machine without GPUs, and CUDA is never touched."""
    env = dict(SLURM_PROCID='{rank}', SLURM_NTASKS='2', SLURM_LOCALID='{rank}',
               SLURM_NODELIST='localhost', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
    results = two_ranks(_launcher_slurm, tmp_path, env=env)
    for rank, result in enumerate(results):
        assert result == dict(dist=(rank, 2), backend='gloo', sum=3.0, local_rank=str(rank))


def _guard_rank(rank):
    from mmengine.optim import OptimWrapper
    from torch.nn.parallel import DistributedDataParallel

    from mmintrovae.models import IntroVAE
    torch.manual_seed(0)
    net = DistributedDataParallel(torch.nn.Linear(3, 1))
    opt = OptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1))
    x = torch.ones(2, 3) * (rank + 1)
    loss = net(x).sum() * (float('nan') if rank == 1 else 1.0)
    skipped = IntroVAE._update(opt, loss, net, retain_graph=False)
    stepped = IntroVAE._update(opt, net(x).sum(), net, retain_graph=False)  # no hang after
    return skipped, stepped, net.module.weight.detach().clone()


def test_non_finite_loss_on_one_rank_skips_the_update_on_every_rank(tmp_path):
    """The divergence guard decides on all ranks at once: a rank that skipped backward
    while the other waits in DDP's all-reduce would hang the run."""
    (skip0, step0, w0), (skip1, step1, w1) = two_ranks(_guard_rank, tmp_path, timeout=60)
    assert (skip0, skip1) == (False, False) and (step0, step1) == (True, True)
    assert torch.equal(w0, w1)


def _soft_rank(rank):
    from mmengine import MessageHub
    from mmengine.optim import OptimWrapper, OptimWrapperDict

    from mmintrovae.engine.distributed import IntroVAEDistributedDataParallel
    from mmintrovae.models import SoftIntroVAE
    torch.manual_seed(0)
    model = SoftIntroVAE(encoder=dict(type='IntroVAEEncoder'),
                         generator=dict(type='IntroVAEGenerator'),
                         architecture=dict(image_size=32, channels=(8, 16, 16), latent_dim=8,
                                           image_channels=1),
                         data_preprocessor=dict(type='DataPreprocessor', mean=[0.0], std=[255.0]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = IntroVAEDistributedDataParallel(module=model, device_ids=[rank])
    inner = wrapped.module
    optims = OptimWrapperDict(
        encoder=OptimWrapper(torch.optim.Adam(inner.encoder.parameters(), lr=1e-3)),
        generator=OptimWrapper(torch.optim.Adam(inner.generator.parameters(), lr=1e-3)))
    from mmagic.structures import DataSample
    torch.manual_seed(rank)  # each rank its own images and noise
    for it in range(3):
        MessageHub.get_current_instance().update_info('iter', it)
        imgs = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
        data = dict(inputs=dict(), data_samples=[DataSample(gt_img=img) for img in imgs])
        log = wrapped.train_step(data, optims)
    after = inner.state_dict()
    changed = {name: not torch.equal(before[name], after[name])
               for name in ('encoder.fc.weight', 'generator.fc.0.weight') if name in after}
    return dict(params=torch.cat([p.detach().flatten() for p in inner.parameters()]),
                finite=all(torch.isfinite(v).all().item() for v in log.values()),
                changed=changed)


def test_soft_introvae_trains_under_the_wrapper_with_synchronised_gradients(tmp_path):
    """Soft-IntroVAE's step (5 encoder / 6 decoder passes, two backwards restricted to one
    network each) under the project's DDP wrapper: ranks see different images and noise,
    yet hold identical parameters after three Adam steps, i.e. both networks' gradients
    were all-reduced in their own step."""
    (r0, r1) = two_ranks(_soft_rank, tmp_path, timeout=180)
    assert r0['finite'] and r1['finite']
    assert r0['changed'] == {'encoder.fc.weight': True, 'generator.fc.0.weight': True}
    torch.testing.assert_close(r0['params'], r1['params'], rtol=0, atol=1e-6)


# ------------------------------------------------------------------- the launchers
FAKE = '#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_LOG"\n'


def fake_command(tmp_path, name):
    path = tmp_path / name
    path.write_text(FAKE)
    path.chmod(0o755)
    return str(path)


def test_dist_scripts_pass_torchrun_the_environment_and_extra_arguments(tmp_path):
    log = tmp_path / 'args'
    env = dict(os.environ, PYTHON=fake_command(tmp_path, 'python'), FAKE_LOG=str(log),
               NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1', PORT='29123')
    subprocess.run(['bash', 'tools/dist_train.sh', 'cfg.py', '4', '--amp', '--cfg-options',
                    'a=1'], cwd=REPO, env=env, check=True)
    assert log.read_text().split('\n')[:-1] == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1',
        '--nproc_per_node=4', '--master_port=29123', osp.join(REPO, 'tools/train.py'),
        'cfg.py', '--launcher', 'pytorch', '--amp', '--cfg-options', 'a=1']
    subprocess.run(['bash', 'tools/dist_test.sh', 'cfg.py', 'ck.pth', '2', '--out', 'm.json'],
                   cwd=REPO, env=env, check=True)
    args = log.read_text().split('\n')[:-1]
    assert args[5:] == ['--nproc_per_node=2', '--master_port=29123',
                        osp.join(REPO, 'tools/test.py'), 'cfg.py', 'ck.pth', '--launcher',
                        'pytorch', '--out', 'm.json']
    usage = subprocess.run(['bash', 'tools/dist_train.sh', 'cfg.py'], cwd=REPO, env=env,
                           capture_output=True, text=True)
    assert usage.returncode == 2 and 'usage' in usage.stderr


def test_slurm_scripts_run_srun_with_the_slurm_launcher(tmp_path):
    log = tmp_path / 'args'
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    fake_command(bindir, 'srun')
    env = dict(os.environ, PATH=f'{bindir}:{os.environ["PATH"]}', FAKE_LOG=str(log),
               PYTHON='/opt/py', GPUS='16', GPUS_PER_NODE='8', SRUN_ARGS='--qos=low')
    subprocess.run(['bash', 'tools/slurm_train.sh', 'part', 'job', 'cfg.py', 'work', '--amp'],
                   cwd=REPO, env=env, check=True)
    assert log.read_text().split('\n')[:-1] == [
        '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '--qos=low', '/opt/py', '-u',
        osp.join(REPO, 'tools/train.py'), 'cfg.py', '--work-dir=work', '--launcher', 'slurm',
        '--amp']
    subprocess.run(['bash', 'tools/slurm_test.sh', 'part', 'job', 'cfg.py', 'ck.pth'],
                   cwd=REPO, env=env, check=True)
    assert log.read_text().split('\n')[-5:-1] == ['cfg.py', 'ck.pth', '--launcher', 'slurm']


# ------------------------------------------------------------ end to end (slow)
ITERS = 4
BATCH = 2  # per process; the 1-process run takes 2 * BATCH


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def env_with(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join([TESTS] + ([env['PYTHONPATH']]
                                                   if env.get('PYTHONPATH') else []))
    env.update(extra)
    return env


def write_config(folder, data_root):
    """The Fashion-MNIST recipe shrunk (channels (8, 16, 16), latent 8, 32x32 grey), with
    what makes a 2-process run comparable with a 1-process run of twice the batch:

    * ``sync_bn='torch'``: BatchNorm statistics over the global batch (CPUSyncBatchNorm
      on this machine) instead of per rank;
    * ``m=1000``: the hinges [m - mean KL]^+ stay active (KLs here are about 1), so the
      encoder loss is linear in the per-rank batch means and the average of the ranks'
      gradients is the gradient of the global batch's loss;
    * no random flips (numpy's per-process RNG) and KeyedNoiseIntroVAE
      (tests/_dist_probe.py): the reparameterisation and prior noise of each image is
      keyed by (iteration, call, image), not drawn from each rank's own RNG
      (``diff_rank_seed=True`` seeds the ranks differently, as it should for training);
    * the recipe's InfiniteSampler with shuffle=True: both runs draw the same permutation
      (seeded from rank 0), and the two ranks' interleaved shares of iteration t are the
      images of the 1-process batch t.

    Checkpoint and validation (PSNR/MSE of reconstructions, KL metric) at iteration 4; a
    sample grid at iteration 2; RankStateDumpHook dumps every rank's weights at the end.
    """
    text = textwrap.dedent(f"""\
        _base_ = [{osp.join(REPO, 'configs', 'introvae_fashionmnist32.py')!r}]
        custom_imports = dict(imports=['mmintrovae', '_dist_probe'], allow_failed_imports=False)
        model = dict(type='KeyedNoiseIntroVAE',
                     architecture=dict(channels=(8, 16, 16), latent_dim=8),
                     vae_warmup_iters=1, m=1000.0)
        sync_bn = 'torch'
        train_dataloader = dict(batch_size={BATCH}, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root={str(data_root)!r}, flip=False))
        val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                              dataset=dict(data_root={str(data_root)!r}, max_images=7))
        test_dataloader = val_dataloader
        val_evaluator = dict(type='Evaluator', metrics=[
            dict(type='PSNR', prefix='rec'), dict(type='MSE', prefix='rec'),
            dict(type='IntroVAEKL')])
        test_evaluator = val_evaluator
        train_cfg = dict(max_iters={ITERS}, val_interval={ITERS})
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval={ITERS}, save_best=None))
        visualizer = dict(vis_backends=[dict(type='VisBackend')])
        custom_hooks = [
            dict(type='RNGStateHook'),
            dict(type='VisualizationHook', interval=2, fixed_input=True,
                 vis_kwargs_list=[dict(type='GAN', name='samples', n_samples=4)]),
            dict(type='RankStateDumpHook')]
        """)
    path = osp.join(folder, 'cfg.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


def run(cmd, env):
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def val_metrics(work_dir):
    rows = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if 'rec/PSNR' in r]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    data = write_image_folder(root / 'images', 8, 32, mode='L')
    cfg = write_config(root, data)
    dist_log = run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(root / 'dist')],
                   env_with(PORT=str(free_port())))
    single_log = run([sys.executable, 'tools/train.py', cfg, '--work-dir', str(root / 'single'),
                      '--cfg-options', f'train_dataloader.batch_size={2 * BATCH}'], env_with())
    return dict(root=root, cfg=cfg, data=data, dist=root / 'dist', single=root / 'single',
                dist_log=dist_log, single_log=single_log)


def load_state(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_total_batch(runs):
    """2 processes x batch 2 (gloo, SyncBN) == 1 process x batch 4, same seed.

    The ranks end bit-identical (DDP all-reduces both networks' gradients in both steps;
    had one network's gradients not been averaged, the ranks, which see different images,
    would drift apart). Against the 1-process run the tolerance is atol=1e-5 on every
    weight and buffer: only the float summation order differs (all-reduce, SyncBN sums;
    measured 1.2e-7). The 4 Adam steps (lr 2e-4) move every weight tensor by 5e-4 to
    8e-4; the same 2-process run without SyncBN (per-rank BatchNorm statistics) ends
    1.5e-3 away from the 1-process run, so the tolerance tells them apart.
    """
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    dist, single = runs['dist'], runs['single']
    assert 'gloo' in runs['dist_log'] and 'CPUSyncBatchNorm' in runs['dist_log']
    rank0, rank1 = load_state(dist / 'rank0_state.pth'), load_state(dist / 'rank1_state.pth')
    assert rank0.keys() == rank1.keys()
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []

    # one checkpoint, written by rank 0 only, with the keys of a 1-process checkpoint
    assert sorted(osp.basename(p) for p in glob.glob(str(dist / '*.pth'))) == [
        'iter_4.pth', 'rank0_init.pth', 'rank0_state.pth', 'rank1_init.pth', 'rank1_state.pth']
    assert (dist / 'saved_by_ranks.txt').read_text().split() == ['0']
    ckpt = load_checkpoint_safely(str(dist / 'iter_4.pth'))['state_dict']
    single_ckpt = load_checkpoint_safely(str(single / 'iter_4.pth'))['state_dict']
    assert list(ckpt) == list(single_ckpt)
    assert all(torch.equal(ckpt[k], rank0[k]) for k in rank0)
    assert len(glob.glob(str(dist / '*' / 'vis_data' / 'vis_image' / 'samples_*.png'))) == 2

    reference = load_state(single / 'rank0_state.pth')
    init = load_state(dist / 'rank0_init.pth')
    assert all(torch.equal(init[k], v) for k, v in load_state(single / 'rank0_init.pth').items())
    weights = [k for k in init if init[k].is_floating_point() and 'running' not in k]
    moved = min((rank0[k] - init[k]).abs().max().item() for k in weights)
    assert moved > 2e-4  # every weight tensor moved (measured: 5e-4 to 8e-4)
    worst = max(((rank0[k].double() - reference[k].double()).abs().max().item(), k)
                for k in rank0 if rank0[k].is_floating_point())
    assert worst[0] < 1e-5, worst  # measured: 1.2e-7


@pytest.mark.slow
def test_validation_during_distributed_training_gathers_all_ranks(runs):
    """Validation at iteration 4: rank 0 logs metrics over all 7 images (the sampler's
    padding dropped), equal to the 1-process run's (reconstructions G(mu(x)) and
    kl_real/kl_rec need no noise; kl_fake does and is not compared)."""
    dist, single = val_metrics(runs['dist']), val_metrics(runs['single'])
    assert len(dist) == 1 and len(single) == 1
    for key in ('rec/PSNR', 'rec/MSE', 'kl/kl_real', 'kl/kl_rec'):
        assert dist[0][key] == pytest.approx(single[0][key], rel=1e-4), key


@pytest.mark.slow
def test_dist_test_gives_the_single_process_metrics(runs, tmp_path):
    """tools/dist_test.sh, 2 processes, 7 test images (rank 1's last batch is padded by
    DefaultSampler), against tools/test.py: reconstruction metrics and kl_real/kl_rec are
    deterministic in eval mode and must agree (rel 1e-5; only the summation order may
    differ). kl_fake is computed on prior samples, whose noise each rank draws from its
    own RNG, so it is not compared."""
    ckpt = str(runs['dist'] / 'iter_4.pth')
    out_dist, out_single = tmp_path / 'dist.json', tmp_path / 'single.json'
    run(['bash', 'tools/dist_test.sh', runs['cfg'], ckpt, '2', '--work-dir',
         str(tmp_path / 'dist'), '--out', str(out_dist)], env_with(PORT=str(free_port())))
    run([sys.executable, 'tools/test.py', runs['cfg'], ckpt, '--work-dir',
         str(tmp_path / 'single'), '--out', str(out_single)], env_with())
    dist, single = json.loads(out_dist.read_text()), json.loads(out_single.read_text())
    assert dist.keys() == single.keys()
    for key in ('rec/PSNR', 'rec/MSE', 'kl/kl_real', 'kl/kl_rec'):
        assert dist[key] == pytest.approx(single[key], rel=1e-5), key
