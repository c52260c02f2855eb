"""Reconstructions G(mu(x)) of an image or a folder of images, written under the same names.

    python tools/reconstruct.py CONFIG CHECKPOINT --input IMAGES --out recons [--grid]
"""
import argparse
import os.path as osp
import sys

# Runnable from a checkout without installing the package.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _inference_cli import add_model_args, require_files  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Reconstruct images with an IntroVAE')
    add_model_args(parser)
    parser.add_argument('--input', required=True, help='an image file or a folder of images')
    parser.add_argument('--out', required=True, help='output folder (<name>.png per input)')
    parser.add_argument('--grid', nargs='?', const='grid.png', default=None,
                        help='also write inputs beside reconstructions (file name in --out, '
                        'or a path; default name grid.png)')
    parser.add_argument('--batch-size', type=int, default=32)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prog = osp.basename(__file__)
    require_files(prog, args)
    if not osp.exists(args.input):
        raise SystemExit(f'{prog}: input not found: {args.input}')

    from mmintrovae.apis import init_model, reconstruct_folder
    try:
        model = init_model(args.config, args.checkpoint, device=args.device)
        result = reconstruct_folder(model, args.input, args.out, grid=args.grid,
                                    batch_size=args.batch_size, sample_model=args.sample_model)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        raise SystemExit(f'{prog}: {e}')
    paths = result['images']
    print(f'wrote {len(paths)} reconstructions: {paths[0]}'
          + (f' ... {paths[-1]}' if len(paths) > 1 else ''))
    if result['grid']:
        print(f'wrote grid: {result["grid"]}')


if __name__ == '__main__':
    main()
