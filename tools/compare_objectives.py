"""VAE vs IntroVAE vs Soft-IntroVAE on Fashion-MNIST 32x32, by the project's own recipes.

    python tools/compare_objectives.py [--iters N] [--out work_dirs/compare_fashionmnist32]

For each of configs/vae_fashionmnist32.py, configs/introvae_fashionmnist32.py and
configs/softintrovae_fashionmnist32.py, one after the other:

1. tools/train.py trains it for the same number of iterations (the recipes' own
   by default; ``--iters N`` overrides it and scales a recipe's VAE warm-up by
   the same factor). Validation during training is off: each model is
   evaluated once, in step 2. The wall time of training is recorded.
2. tools/test.py --out metrics.json evaluates the last checkpoint on the
   recipe's test images: FID, SWD and MS-SSIM of prior samples, PSNR/SSIM/MSE
   of reconstructions, and the encoder's KL of real images, reconstructions
   and samples.
3. 64 prior samples are drawn from the same latents (``--seed``).

Results, in ``--out``: ``comparison.md`` (one markdown table), ``comparison.json``
(the same figures, the settings and the machine), ``samples.png`` (the three 8x8
sample grids side by side under a label row) and one work dir per model. A
model whose results in ``--out`` were made with the same settings is not
trained again (``--force`` retrains), so an interrupted run goes on where it
stopped. The Fashion-MNIST images are prepared first when data/fashion_mnist
is missing (tools/prepare_data.py).
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

#: (key, label, config): the baseline first.
MODELS = [
    ('vae', 'VAE', 'configs/vae_fashionmnist32.py'),
    ('introvae', 'IntroVAE', 'configs/introvae_fashionmnist32.py'),
    ('softintrovae', 'Soft-IntroVAE', 'configs/softintrovae_fashionmnist32.py'),
]
#: (metrics.json key, column title, format).
COLUMNS = [
    ('FID/fid', 'FID (lower is better)', '{:.1f}'),
    ('SWD/avg', 'SWD x1e3 (lower)', '{:.1f}'),
    ('MS-SSIM/avg', 'MS-SSIM of samples (lower: more diverse)', '{:.3f}'),
    ('rec/PSNR', 'rec. PSNR dB (higher)', '{:.2f}'),
    ('rec/SSIM', 'rec. SSIM (higher)', '{:.3f}'),
    ('kl/kl_real', 'KL real', '{:.1f}'),
    ('kl/kl_rec', 'KL rec.', '{:.1f}'),
    ('kl/kl_fake', 'KL samples', '{:.1f}'),
    ('kl/kl_fake_minus_real', 'KL samples - real', '{:.1f}'),
]
DATA_DIR = osp.join(REPO, 'data', 'fashion_mnist')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Train and evaluate VAE, IntroVAE and Soft-IntroVAE on Fashion-MNIST 32 '
        'by the project recipes; write one table and one picture of samples.')
    parser.add_argument('--iters', type=int, default=None,
                        help="training iterations for every model (default: the recipes' own, "
                        '800); a VAE warm-up is scaled by the same factor')
    parser.add_argument('--out', default=osp.join('work_dirs', 'compare_fashionmnist32'),
                        help='output folder (default: %(default)s)')
    parser.add_argument('--models', nargs='+', choices=[m[0] for m in MODELS],
                        default=[m[0] for m in MODELS], help='a subset, in the table order')
    parser.add_argument('--fake-nums', type=int, default=None,
                        help="generated images for FID, SWD and MS-SSIM (default: the recipes' "
                        '500)')
    parser.add_argument('--test-images', type=int, default=None,
                        help="held-out images evaluated (default: the recipes' 500)")
    parser.add_argument('--seed', type=int, default=0, help='latents of the sample picture')
    parser.add_argument('--force', action='store_true',
                        help='train and evaluate again even where results exist')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='more overrides for training and testing, e.g. '
                        'train_dataloader.num_workers=0')
    args = parser.parse_args(argv)
    for name in ('iters', 'fake_nums', 'test_images'):
        value = getattr(args, name)
        if value is not None and value < (2 if name == 'fake_nums' else 1):
            parser.error(f'--{name.replace("_", "-")} must be >= {2 if name == "fake_nums" else 1}')
    if args.fake_nums is not None and args.fake_nums % 2:
        parser.error('--fake-nums must be even (MS-SSIM compares pairs of samples)')
    return args


def options_list(options: dict):
    return [f'{k}={v}' for k, v in options.items()]


def run(cmd, what):
    print(f'[compare] {what}:\n  ' + ' '.join(cmd), flush=True)
    t0 = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO)
    seconds = time.monotonic() - t0
    if result.returncode != 0:
        raise SystemExit(f'[compare] {what} failed (exit code {result.returncode}); '
                         'the output above says why')
    return seconds


def train_options(cfg, iters: int) -> dict:
    """Same iterations for every model; no validation during training (evaluated once after)."""
    recipe_iters = cfg.train_cfg.max_iters
    opts = {'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters,
            'val_cfg': None, 'val_dataloader': None, 'val_evaluator': None}
    warmup = cfg.model.get('vae_warmup_iters', 0)
    if warmup and iters != recipe_iters:
        opts['model.vae_warmup_iters'] = int(round(warmup * iters / recipe_iters))
    return opts


def test_options(cfg, fake_nums, test_images) -> dict:
    opts = {}
    if test_images is not None:
        opts['test_dataloader.dataset.max_images'] = test_images
    if fake_nums is not None:
        for i, metric in enumerate(cfg.test_evaluator.metrics):
            if 'fake_nums' in metric:
                opts[f'test_evaluator.metrics.{i}.fake_nums'] = fake_nums
    return opts


def sample_grid(config, checkpoint, seed):
    from mmintrovae.apis import init_model, make_grid, sample
    model = init_model(config, checkpoint, device='cpu')
    return make_grid(sample(model, 64, seed=seed), nrow=8)


def side_by_side(grids, labels, path, zoom=2):
    """Grids (uint8 HxWxC) next to each other, each under its label, on white."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font = ImageFont.load_default()
    tiles = []
    for grid in grids:
        img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).convert('RGB')
        tiles.append(img.resize((img.width * zoom, img.height * zoom), Image.NEAREST))
    label_h, gap = 32, 16
    width = sum(t.width for t in tiles) + gap * (len(tiles) + 1)
    height = label_h + max(t.height for t in tiles) + gap
    canvas = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(canvas)
    x = gap
    for tile, label in zip(tiles, labels):
        draw.text((x, 6), label, fill='black', font=font)
        canvas.paste(tile, (x, label_h))
        x += tile.width + gap
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path


def fmt(key, value, style):
    if value is None:
        return 'n/a'
    text = f'{value:.1f}' if key == 'SWD/avg' else style.format(value)  # SWD: x1e3 already
    return text[1:] if text.startswith('-') and float(text) == 0 else text  # no '-0.0'


def minutes(seconds):
    return f'{seconds / 60:.1f} min'


def write_table(rows, settings, path):
    head = ['model', 'config', 'iterations', 'train wall time', 'eval wall time'] + \
        [c[1] for c in COLUMNS]
    lines = [
        f"Fashion-MNIST 32x32, {settings['iters']} iterations per model at batch "
        f"{settings['batch_size']} on {settings['machine']}; evaluated on "
        f"{settings['test_images']} held-out images and {settings['fake_nums']} prior samples.",
        '',
        '| ' + ' | '.join(head) + ' |',
        '|' + '---|' * len(head),
    ]
    for r in rows:
        cells = [r['label'], f"`{osp.basename(r['config'])}`", str(r['iters']),
                 minutes(r['train_seconds']), minutes(r['eval_seconds'])]
        cells += [fmt(key, r['metrics'].get(key), style) for key, _, style in COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    chosen = [m for m in MODELS if m[0] in args.models]
    cfgs = {key: Config.fromfile(osp.join(REPO, config)) for key, _, config in chosen}
    for cfg in cfgs.values():
        cfg.merge_from_dict(args.cfg_options)

    recipe_iters = {key: cfg.train_cfg.max_iters for key, cfg in cfgs.items()}
    if args.iters is None and len(set(recipe_iters.values())) > 1:
        raise SystemExit(f'[compare] the recipes train for different numbers of iterations '
                         f'({recipe_iters}); give --iters')
    iters = args.iters or next(iter(recipe_iters.values()))
    first = next(iter(cfgs.values()))
    fake_nums = args.fake_nums or max(m.get('fake_nums', 0) for m in first.test_evaluator.metrics)
    test_images = args.test_images or first.test_dataloader.dataset.get('max_images') or 'all'
    settings = dict(iters=iters, fake_nums=fake_nums, test_images=test_images,
                    batch_size=first.train_dataloader.batch_size, seed=args.seed,
                    cfg_options=options_list(args.cfg_options),
                    machine=f'{os.cpu_count()} CPU cores ({platform.machine()}), no GPU used')

    if not args.cfg_options and not osp.isdir(osp.join(DATA_DIR, 'test')):
        run([sys.executable, 'tools/prepare_data.py', 'fashion_mnist'], 'preparing Fashion-MNIST')

    rows = []
    for key, label, config in chosen:
        cfg, work = cfgs[key], osp.join(out, key)
        result_path = osp.join(work, 'result.json')
        if not args.force and osp.isfile(result_path):
            with open(result_path) as f:
                done = json.load(f)
            if done.get('settings') == settings:
                print(f'[compare] {label}: reusing {result_path} (--force retrains)')
                rows.append(done)
                continue
        train_opts = {**args.cfg_options, **train_options(cfg, iters)}
        train_s = run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                       '--cfg-options', *options_list(train_opts)],
                      f'{label}: training {iters} iterations')
        with open(osp.join(work, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        metrics_path = osp.join(work, 'metrics.json')
        test_opts = {**args.cfg_options, **test_options(cfg, args.fake_nums, args.test_images)}
        cmd = [sys.executable, 'tools/test.py', config, checkpoint, '--work-dir',
               osp.join(work, 'test'), '--out', metrics_path]
        if test_opts:
            cmd += ['--cfg-options', *options_list(test_opts)]
        eval_s = run(cmd, f'{label}: evaluation')
        with open(metrics_path) as f:
            metrics = json.load(f)
        row = dict(key=key, label=label, config=config, iters=iters, checkpoint=checkpoint,
                   train_seconds=round(train_s, 1), eval_seconds=round(eval_s, 1),
                   metrics=metrics, settings=settings)
        with open(result_path, 'w') as f:
            json.dump(row, f, indent=2)
        rows.append(row)

    grids = [sample_grid(osp.join(REPO, r['config']), r['checkpoint'], args.seed) for r in rows]
    picture = side_by_side(grids, [f"{r['label']} ({r['iters']} it.)" for r in rows],
                           osp.join(out, 'samples.png'))
    table = write_table(rows, settings, osp.join(out, 'comparison.md'))
    with open(osp.join(out, 'comparison.json'), 'w') as f:
        json.dump(dict(settings=settings, models=rows), f, indent=2)
    print(open(table).read())
    print(f'[compare] wrote {table}, {osp.join(out, "comparison.json")} and {picture}')


if __name__ == '__main__':
    main()
