"""Evaluate a checkpoint:  python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] ..."""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Test (evaluate) an IntroVAE checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, e.g. test_dataloader.batch_size=8')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    import mmintrovae  # noqa: F401
    from mmengine.config import Config
    from mmintrovae.engine.config import MetricsKeeper, apply_test_args, build_runner
    if not osp.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint file not found: {args.checkpoint}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg = apply_test_args(cfg, args)
    runner = build_runner(cfg)
    keeper = MetricsKeeper()
    runner.register_hook(keeper, 'LOWEST')
    # MMagic's MultiTestLoop returns None; the metrics reach the hooks.
    metrics = runner.test() or keeper.metrics
    from mmengine.dist import is_main_process
    if args.out and is_main_process():  # every rank holds the gathered metrics
        import json
        with open(args.out, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2)
        print(f'metrics written to {args.out}')


if __name__ == '__main__':
    main()
