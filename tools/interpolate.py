"""Latent interpolation between two images or two seeds: frames, a grid and a GIF.

    python tools/interpolate.py CONFIG CHECKPOINT --seeds 1 2 --steps 10 --out interp
    python tools/interpolate.py CONFIG CHECKPOINT --images a.png b.png --steps 10 --out interp
"""
import argparse
import os.path as osp
import sys

# Runnable from a checkout without installing the package.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _inference_cli import add_model_args, require_files  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Interpolate in the latent space of an IntroVAE')
    add_model_args(parser)
    ends = parser.add_mutually_exclusive_group(required=True)
    ends.add_argument('--images', nargs=2, metavar=('A', 'B'),
                      help='two images; their encodings mu are the endpoints')
    ends.add_argument('--seeds', nargs=2, type=int, metavar=('S1', 'S2'),
                      help='two seeds; their prior draws are the endpoints')
    parser.add_argument('--steps', type=int, default=8, help='frames, endpoints included')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--mode', choices=['linear', 'slerp'], default='linear')
    parser.add_argument('--truncation', type=float, default=1.0, help='latent std for --seeds')
    parser.add_argument('--fps', type=float, default=10)
    parser.add_argument('--boomerang', action='store_true', help='GIF plays back and forth')
    parser.add_argument('--mp4', action='store_true',
                        help='also write interpolation.mp4 (needs imageio-ffmpeg)')
    parser.add_argument('--nrow', type=int, default=None, help='grid frames per row')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prog = osp.basename(__file__)
    require_files(prog, args, [('image', p) for p in args.images or ()])
    if args.steps < 2:
        raise SystemExit(f'{prog}: --steps must be >= 2')

    from mmintrovae.apis import (init_model, interpolate, save_gif, save_grid, save_image,
                                 save_video, video_supported)
    if args.mp4 and not video_supported():
        raise SystemExit(f'{prog}: --mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg)')
    start, end = args.images or args.seeds
    try:
        model = init_model(args.config, args.checkpoint, device=args.device)
        frames = interpolate(model, start, end, args.steps, mode=args.mode,
                             truncation=args.truncation, sample_model=args.sample_model)
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f'{prog}: {e}')
    width = max(3, len(str(args.steps - 1)))
    paths = [save_image(f, osp.join(args.out, f'frame_{i:0{width}d}.png'))
             for i, f in enumerate(frames)]
    print(f'wrote {len(paths)} frames: {paths[0]} ... {paths[-1]}')
    grid = save_grid(frames, osp.join(args.out, 'grid.png'), args.nrow or min(10, len(frames)))
    print(f'wrote grid: {grid}')
    gif = save_gif(frames, osp.join(args.out, 'interpolation.gif'), fps=args.fps,
                   boomerang=args.boomerang)
    print(f'wrote gif: {gif}')
    if args.mp4:
        print(f'wrote mp4: {save_video(frames, osp.join(args.out, "interpolation.mp4"), args.fps)}')


if __name__ == '__main__':
    main()
