"""Measure how long --resume takes to reach its first training iteration, late in a run of
a large-image recipe, with MMEngine's IterBasedTrainLoop (re-reads every consumed batch)
and with the recipes' FastResumeIterBasedTrainLoop (skips them without reading).

    python tools/measure_resume.py [--recipe configs/introvae_celebahq1024.py]
        [--iters 2000] [--images 64] [--out /tmp/measure_resume]

What it does: writes a folder of generated JPEG images at the recipe's size, shrinks the
recipe's networks to 4 channels a level (a training step is then cheap: the data side is
what is measured) and keeps its batch size and data loader workers, trains one iteration
to get a checkpoint, rewrites that checkpoint as if it had been saved at iteration
``--iters`` (its ``meta.iter``), and times ``tools/train.py --resume`` from the start of
the process to the start of the first training iteration after the resume (a hook stops
the process there), once per loop. Prints a table; nothing is written outside --out.
"""
import argparse
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

TIMER_HOOK = '''
import os, time
from mmengine.hooks import Hook
from mmagic.registry import HOOKS


@HOOKS.register_module()
class FirstIterationTimer(Hook):
    """Writes the wall time at the first training iteration, then ends the process."""
    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        with open(os.path.join(runner.work_dir, 'first_iteration'), 'w') as f:
            f.write(repr(time.time()))
        os._exit(0)
'''


def write_images(folder, n, size, seed=0):
    import numpy as np
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = osp.join(folder, f'img_{i:04d}.jpg')
        if osp.exists(path):
            continue
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        noise = rng.integers(-12, 13, (size, size, 3))  # texture: a realistic JPEG size
        img = Image.fromarray(np.clip(np.asarray(img, int) + noise, 0, 255).astype(np.uint8))
        img.save(path, quality=95)
    return folder


def write_config(out, recipe, data, loop, timed):
    from mmengine.config import Config
    base = Config.fromfile(recipe)
    levels = len(base.model.architecture.channels)
    text = textwrap.dedent(f"""\
        _base_ = [{osp.abspath(recipe)!r}]
        custom_imports = dict(imports=['mmintrovae', '_first_iteration_timer'],
                              allow_failed_imports=False)
        model = dict(architecture=dict(channels={(4, ) * levels!r}, latent_dim=8))
        train_dataloader = dict(dataset=dict(data_root={data!r}))
        val_dataloader = None
        val_cfg = None
        val_evaluator = None
        test_dataloader = None
        test_cfg = None
        test_evaluator = None
        train_cfg = dict(_delete_=True, type={loop!r}, max_iters={10**9 if timed else 1})
        default_hooks = dict(logger=dict(interval=1),
                             checkpoint=dict(interval=1, max_keep_ckpts=-1, save_best=None))
        visualizer = dict(vis_backends=[dict(type='VisBackend')])
        custom_hooks = [dict(type='RNGStateHook')
                        {", dict(type='FirstIterationTimer')" if timed else ''}]
        """)
    path = osp.join(out, f'cfg_{loop}{"_timed" if timed else ""}.py')
    with open(path, 'w') as f:
        f.write(text)
    return path


def run_train(cfg, work, *extra, env):
    cmd = [sys.executable, osp.join(REPO, 'tools/train.py'), cfg, '--work-dir', work, *extra]
    start = time.time()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f'{" ".join(cmd)} failed:\n{log[-4000:]}')
    return start, log


def make_late_checkpoint(work, iters):
    """iter_1.pth, saved as if at iteration ``iters``; last_checkpoint names it."""
    import torch

    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    ckpt = load_checkpoint_safely(osp.join(work, 'iter_1.pth'))
    ckpt['meta']['iter'] = iters
    path = osp.join(work, f'iter_{iters}.pth')
    torch.save(ckpt, path)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--recipe', default=osp.join(REPO, 'configs/introvae_celebahq1024.py'))
    parser.add_argument('--iters', type=int, default=2000, help='resume at this iteration')
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--out', default='/tmp/measure_resume')
    parser.add_argument('--loops', nargs='+',
                        default=['IterBasedTrainLoop', 'FastResumeIterBasedTrainLoop'])
    args = parser.parse_args(argv)

    from mmengine.config import Config
    recipe = Config.fromfile(args.recipe)
    size = recipe.model.architecture.image_size
    loader = recipe.train_dataloader
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, '_first_iteration_timer.py'), 'w') as f:
        f.write(TIMER_HOOK)
    data = write_images(osp.join(args.out, f'images{size}'), args.images, size)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, args.out] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))

    rows = []
    for loop in args.loops:
        work = osp.join(args.out, f'work_{loop}')
        shutil.rmtree(work, ignore_errors=True)
        run_train(write_config(args.out, args.recipe, data, loop, False), work,
                  env=env)  # one iteration: iter_1.pth
        make_late_checkpoint(work, args.iters)
        start, log = run_train(write_config(args.out, args.recipe, data, loop, True), work,
                               '--resume', env=env)
        with open(osp.join(work, 'first_iteration')) as f:
            seconds = float(f.read()) - start
        skipped = ('re-read' if 'Advance dataloader' in log else
                   'skipped unread' if 'without loading them' in log else '?')
        rows.append((loop, seconds, skipped))
        print(f'{loop}: {seconds:.1f} s from process start to iteration {args.iters + 1} '
              f'({skipped})', flush=True)

    print(f'\nResume at iteration {args.iters} of {osp.basename(args.recipe)} '
          f'({size}x{size} JPEG, batch {loader.batch_size}, {loader.num_workers} workers, '
          f'{args.iters * loader.batch_size} samples consumed; networks shrunk to 4 channels):')
    print('| loop | process start to first iteration | consumed batches |')
    print('|---|---|---|')
    for loop, seconds, skipped in rows:
        print(f'| {loop} | {seconds:.1f} s | {skipped} |')


if __name__ == '__main__':
    main()
