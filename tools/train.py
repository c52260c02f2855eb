"""Train an mmintrovae model:  python tools/train.py CONFIG [--work-dir DIR] [--resume] ..."""
import argparse
import os
import os.path as osp
import sys

# Runnable from a checkout without installing the package.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train an IntroVAE model with MMagic')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CHECKPOINT, or from the latest checkpoint in the '
                        'work dir when no path is given')
    parser.add_argument('--amp', action='store_true', help='mixed precision for both networks')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, e.g. train_cfg.max_iters=1000')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args):
    from mmengine.config import Config
    from mmintrovae.engine.config import apply_train_args
    if not osp.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return apply_train_args(cfg, args)


def main(argv=None):
    args = parse_args(argv)
    import mmintrovae  # noqa: F401  (registers modules and runtime fixes)
    from mmintrovae.engine.auto_resume import NoIntactCheckpointError
    from mmintrovae.engine.config import build_runner
    cfg = build_config(args)
    try:
        runner = build_runner(cfg)
    except NoIntactCheckpointError as e:  # --resume in a work dir of damaged checkpoints
        raise SystemExit(str(e)) from None
    runner.train()
    print(f'Training finished; checkpoints and logs are in {osp.abspath(cfg.work_dir)}')


if __name__ == '__main__':
    main()
