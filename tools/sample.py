"""Prior samples of a trained IntroVAE as PNG files (and a grid).

    python tools/sample.py CONFIG CHECKPOINT --num 64 --seed 0 --out samples [--grid grid.png]
"""
import argparse
import os
import os.path as osp
import sys

# Runnable from a checkout without installing the package.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _inference_cli import add_model_args, require_files  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Sample images from an IntroVAE')
    add_model_args(parser)
    parser.add_argument('--num', type=int, default=16, help='number of images')
    parser.add_argument('--seed', type=int, default=None,
                        help='latent seed (default: random, printed)')
    parser.add_argument('--truncation', type=float, default=1.0,
                        help='scale of eps ~ N(0, I) in the latents; 0 gives one image')
    parser.add_argument('--prior', choices=['standard', 'aggregate'], default=None,
                        help="N(0, I), or the Gaussian fitted to the training posteriors "
                             "(models trained with latent_prior='aggregate'); default: the "
                             "model's own latent_prior")
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--grid', nargs='?', const='grid.png', default=None,
                        help='also write a grid (file name in --out, or a path)')
    parser.add_argument('--nrow', type=int, default=None, help='grid images per row')
    parser.add_argument('--batch-size', type=int, default=64)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prog = osp.basename(__file__)
    require_files(prog, args)
    if args.num < 1:
        raise SystemExit(f'{prog}: --num must be >= 1')
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), 'little') >> 1

    from mmintrovae.apis import init_model, sample, save_grid, save_image
    try:
        model = init_model(args.config, args.checkpoint, device=args.device)
        images = sample(model, args.num, seed=seed, truncation=args.truncation,
                        batch_size=args.batch_size, sample_model=args.sample_model,
                        prior=args.prior)
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f'{prog}: {e}')
    width = max(4, len(str(args.num - 1)))
    paths = [save_image(img, osp.join(args.out, f'sample_{i:0{width}d}.png'))
             for i, img in enumerate(images)]
    print(f'wrote {len(paths)} samples (seed {seed}, truncation {args.truncation}): '
          f'{paths[0]}' + (f' ... {paths[-1]}' if len(paths) > 1 else ''))
    if args.grid:
        grid = args.grid if osp.dirname(args.grid) else osp.join(args.out, args.grid)
        nrow = args.nrow or max(1, int(round(len(images) ** 0.5)))
        print(f'wrote grid: {save_grid(images, grid, nrow)}')


if __name__ == '__main__':
    main()
