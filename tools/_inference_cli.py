"""Command-line pieces shared by sample.py, reconstruct.py and interpolate.py."""
import os.path as osp


def add_model_args(parser):
    """CONFIG, CHECKPOINT, --sample-model and --device: how every inference tool loads a model."""
    parser.add_argument('config', help='config file the model was trained with')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--sample-model', choices=['orig', 'ema'], default=None,
                        help='generator to use (default: EMA when the model has one)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')


def require_files(prog, args, extra=()):
    """Exit with a message naming the first missing file, before any slow import."""
    for kind, path in [('config', args.config), ('checkpoint', args.checkpoint), *extra]:
        if not osp.isfile(path):
            raise SystemExit(f'{prog}: {kind} file not found: {path}')
