"""Train and evaluate any list of generative-model configs at equal compute; one table.

    python tools/compare.py [CONFIG ...] [--seconds T] [--iters N] [--seeds 0 1]
                            [--metrics Inception SWD ...] [--out DIR]

CONFIG: a plugin config (configs/introvae_emoji64.py), an MMagic one
(``mmagic::dcgan/...``, or configs/dcgan_emoji64.py, MMagic's DCGAN on the
plugin's data) or any config whose model MMagic can build. Default: the
Fashion-MNIST recipes, VAE, IntroVAE, Soft-IntroVAE and DCGAN of the same width.

For every config and every seed, one run after the other:

1. tools/train.py trains it with ``randomness.seed`` = the seed, for the same
   budget: ``--seconds T`` of training wall time (TrainTimeBudgetHook ends
   training and saves the last checkpoint), ``--iters N`` iterations (a VAE
   warm-up is then scaled by N / the recipe's iterations), or both (whichever
   comes first); by default the recipes' own iterations. No validation during
   training.
2. tools/test.py evaluates the last checkpoint by the protocol of
   ``--protocol`` (configs/_base_/compare_protocol.py): the same sample metrics
   for every model and, where the model has an encoder, reconstruction
   metrics, on the same held-out images (``--test-images``) and number of
   generated images (``--fake-nums``).

Results in ``--out``: ``comparison.md`` (per config: the mean and sample standard
deviation over seeds of every metric, iterations, training wall time and
images/s), ``comparison.json`` (the same, every run and the settings),
``samples.png`` (per config, 64 samples of its first seed's model, and real test
images above their reconstructions where the model has an encoder), and one
folder per config and seed (config used, work dir, metrics). A run whose
results exist with the same settings is not repeated (``--force`` repeats it),
and a trained run whose evaluation failed or was interrupted is only evaluated, so an
interrupted comparison goes on where it stopped.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

DEFAULT_CONFIGS = [
    'configs/vae_fashionmnist32.py',
    'configs/introvae_fashionmnist32.py',
    'configs/softintrovae_fashionmnist32.py',
    'configs/dcgan_fashionmnist32.py',
]
DEFAULT_PROTOCOL = 'configs/_base_/compare_protocol.py'
#: data folders tools/prepare_data.py makes, by the name it takes
PREPARED_DATA = {'data/emoji': 'emoji', 'data/fashion_mnist': 'fashion_mnist'}
#: max_iters of a run limited by time only: never reached
UNLIMITED_ITERS = 10 ** 9
#: the prefix of a config in MMagic's package (mim)
MMAGIC_PREFIX = 'mmagic::'


# ------------------------------------------------------------------ arguments
def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Train configs for the same wall-clock time and/or iterations over '
        'several seeds, evaluate them by one protocol, write a table, a JSON and a picture.')
    parser.add_argument('configs', nargs='*', default=DEFAULT_CONFIGS,
                        help='config files or mmagic::configs (default: the Fashion-MNIST '
                        'VAE, IntroVAE, Soft-IntroVAE and DCGAN)')
    parser.add_argument('--labels', nargs='+', help='one name per config (default: file names)')
    parser.add_argument('--seconds', type=float, default=None,
                        help='training wall-time budget per run, in seconds')
    parser.add_argument('--iters', type=int, default=None,
                        help="training iterations per run (default: the recipes' own when "
                        'no --seconds is given)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1],
                        help='training seeds; results are the mean and spread over them '
                        '(default: 0 1)')
    parser.add_argument('--protocol', default=DEFAULT_PROTOCOL,
                        help='the file naming the metrics (default: %(default)s)')
    parser.add_argument('--metrics', nargs='+', default=None,
                        help='a subset of the protocol\'s metric names, e.g. Inception SWD '
                        '(default: all)')
    parser.add_argument('--fake-nums', type=int, default=None,
                        help="generated images per sample metric (default: the protocol's)")
    parser.add_argument('--test-images', type=int, default=None,
                        help="held-out images evaluated (default: the configs' own)")
    parser.add_argument('--picture-seed', type=int, default=0,
                        help='latents of the samples picture')
    parser.add_argument('--out', default=None,
                        help='output folder (default: work_dirs/compare_<first config name>)')
    parser.add_argument('--force', action='store_true',
                        help='train and evaluate again even where results exist')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for every config, training and testing, e.g. '
                        'train_dataloader.dataset.data_root=DIR')
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error('--iters must be >= 1')
    if args.seconds is not None and not args.seconds > 0:
        parser.error('--seconds must be > 0')
    if args.fake_nums is not None and (args.fake_nums < 2 or args.fake_nums % 2):
        parser.error('--fake-nums must be even and >= 2 (MS-SSIM compares pairs of samples)')
    if args.test_images is not None and args.test_images < 1:
        parser.error('--test-images must be >= 1')
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds repeats a seed: {args.seeds}')
    if len(set(args.configs)) != len(args.configs):
        parser.error('a config is given twice')
    if args.labels is not None and len(args.labels) != len(args.configs):
        parser.error(f'--labels: {len(args.labels)} labels for {len(args.configs)} configs')
    for config in args.configs:
        if not osp.isfile(resolve(config)):
            parser.error(f'config file not found: {config}')
    if not osp.isfile(resolve(args.protocol)):
        parser.error(f'--protocol: file not found: {args.protocol}')
    return args


def resolve(path: str) -> str:
    """The file of a config: ``mmagic::dcgan/x.py`` in MMagic's package, a path as given,
    or a path relative to the repository (``make compare``)."""
    if path.startswith(MMAGIC_PREFIX):
        from mmengine.utils import get_installed_path
        return osp.join(get_installed_path('mmagic'), '.mim', 'configs',
                        path[len(MMAGIC_PREFIX):])
    if osp.isabs(path) or osp.exists(path):
        return path
    return osp.join(REPO, path)


def config_key(config: str) -> str:
    """A folder name for a config: its file name without .py."""
    return osp.splitext(osp.basename(config.replace(MMAGIC_PREFIX, '')))[0]


# ------------------------------------------------------------------ protocol
def load_protocol(path: str, names=None) -> dict:
    """The protocol file's metrics: {'sample': {name: entry}, 'reconstruction': {...},
    'sample_model': str, 'fake_nums': int}, restricted to ``names`` when given."""
    from mmengine.config import Config
    cfg = Config.fromfile(resolve(path))
    groups = {}
    for group in ('sample', 'reconstruction'):
        entries = cfg.get(f'{group}_metrics', None)
        if entries is None:
            raise SystemExit(f'{path}: no {group}_metrics dict')
        for name, entry in entries.items():
            if 'metric' not in entry or 'columns' not in entry:
                raise SystemExit(f'{path}: {group}_metrics.{name} needs `metric` and `columns`')
        groups[group] = {k: v.to_dict() if hasattr(v, 'to_dict') else dict(v)
                         for k, v in entries.items()}
    known = [n for g in groups.values() for n in g]
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f'--metrics: {unknown} not in {path} (it names {known})')
        groups = {g: {n: e for n, e in entries.items() if n in names}
                  for g, entries in groups.items()}
    sample_model = cfg.get('sample_model', 'orig')
    if sample_model not in ('auto', 'orig', 'ema'):
        raise SystemExit(f"{path}: sample_model must be 'auto', 'orig' or 'ema', "
                         f'got {sample_model!r}')
    return dict(groups, sample_model=sample_model,
                fake_nums=cfg.get('fake_nums', None))


def columns(protocol: dict) -> list:
    """(key, title, format, better) of every metric result, sample metrics first."""
    return [tuple(c) for group in ('sample', 'reconstruction')
            for entry in protocol[group].values() for c in entry['columns']]


def has_encoder(cfg) -> bool:
    return 'encoder' in cfg.model


def image_shape(cfg) -> tuple:
    """(channels, size, size) of the generated images: from the data config (the plugin's
    image folders), the IntroVAE architecture or a DCGAN-style generator's output_scale."""
    dataset = cfg.test_dataloader.dataset
    arch = cfg.model.get('architecture', None) or {}
    generator = cfg.model.get('generator', None) or {}
    size = dataset.get('image_size', None) or arch.get('image_size', None) or \
        generator.get('output_scale', None)
    if not isinstance(size, int):
        raise SystemExit(f'{cfg.filename}: cannot tell the image size (none of '
                         'test_dataloader.dataset.image_size, model.architecture.image_size, '
                         'model.generator.output_scale is an int): set one with --cfg-options')
    channels = arch.get('image_channels', None) or generator.get('out_channels', None) or \
        (1 if dataset.get('color_type', 'color') == 'grayscale' else 3)
    return (int(channels), size, size)


def has_ema(cfg) -> bool:
    return bool(cfg.model.get('ema_config', None))


def sample_model_of(cfg, wanted: str) -> str:
    """The generator a run is judged by: ``wanted``, where 'auto' is the EMA generator of a
    model that keeps one (as its recipe samples) and the live one otherwise."""
    if wanted == 'auto':
        return 'ema' if has_ema(cfg) else 'orig'
    if wanted == 'ema' and not has_ema(cfg):
        raise SystemExit(f"{cfg.filename}: the protocol evaluates sample_model='ema' but the "
                         "model keeps no EMA (model.ema_config): use sample_model='auto'")
    return wanted


def evaluator_metrics(cfg, protocol: dict, fake_nums=None) -> list:
    """The protocol's metric configs for this model: reconstruction ones (first: they walk
    the test images once) only with an encoder."""
    import copy
    groups = (['reconstruction'] if has_encoder(cfg) else []) + ['sample']
    sample_model = sample_model_of(cfg, protocol.get('sample_model', 'orig'))
    metrics = []
    for group in groups:
        for entry in protocol[group].values():
            metric = copy.deepcopy(entry['metric'])
            if 'image_shape' in metric and metric['image_shape'] is None:
                metric['image_shape'] = image_shape(cfg)
            if fake_nums is not None and 'fake_nums' in metric:
                metric['fake_nums'] = fake_nums
            if metric.get('sample_model', None) == 'auto':
                metric['sample_model'] = sample_model
            metrics.append(metric)
    return metrics


# ------------------------------------------------------------------ run configs
def train_options(cfg, iters=None, seconds=None) -> dict:
    """The same budget for every model, no validation during training."""
    recipe_iters = cfg.train_cfg.max_iters
    max_iters = iters or (UNLIMITED_ITERS if seconds else recipe_iters)
    opts = {'train_cfg.max_iters': max_iters, 'train_cfg.val_interval': max_iters,
            'default_hooks.checkpoint.interval': max_iters,
            'val_cfg': None, 'val_dataloader': None, 'val_evaluator': None}
    warmup = cfg.model.get('vae_warmup_iters', 0)
    if warmup and iters and iters != recipe_iters:
        opts['model.vae_warmup_iters'] = int(round(warmup * iters / recipe_iters))
    return opts


def run_config(config: str, seed: int, work_dir: str, protocol: dict, iters=None, seconds=None,
               fake_nums=None, test_images=None, cfg_options=None):
    """The config of one run: the model's own, with the budget, seed, protocol, hooks."""
    from mmengine.config import Config
    cfg = Config.fromfile(resolve(config))
    cfg.merge_from_dict(dict(cfg_options or {}))
    cfg.merge_from_dict(train_options(cfg, iters, seconds))
    cfg.merge_from_dict({'randomness.seed': seed})
    cfg.work_dir = work_dir
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'TrainTimeBudgetHook']
    cfg.custom_hooks = hooks + [dict(type='TrainTimeBudgetHook', budget_s=seconds)]
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    cfg.custom_imports = dict(imports=imports + ['mmintrovae'] * ('mmintrovae' not in imports),
                              allow_failed_imports=False)
    cfg.default_scope = cfg.get('default_scope', None) or 'mmagic'
    cfg.test_evaluator = dict(type='Evaluator',
                              metrics=evaluator_metrics(cfg, protocol, fake_nums))
    if test_images is not None:
        cfg.test_dataloader.dataset.max_images = test_images
    if cfg.get('test_cfg', None) is None:
        cfg.test_cfg = dict(type='MultiTestLoop')
    return cfg


# ------------------------------------------------------------------ running
def run(cmd, what, log_path=None):
    print(f'[compare] {what}:\n  ' + ' '.join(cmd), flush=True)
    t0 = time.monotonic()
    if log_path is None:
        result = subprocess.run(cmd, cwd=REPO)
    else:
        with open(log_path, 'w') as log:
            result = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    if result.returncode != 0:
        where = f'; its output is in {log_path}' if log_path else '; the output above says why'
        raise SystemExit(f'[compare] {what} failed (exit code {result.returncode}){where}')
    return seconds


def prepare_data(cfgs) -> None:
    """Make the plugin's data sets that a config needs and that are missing."""
    for cfg in cfgs:
        for loader in ('train_dataloader', 'test_dataloader'):
            root = cfg.get(loader, {}).get('dataset', {}).get('data_root', None)
            if not root or osp.isdir(osp.join(REPO, root)):
                continue
            name = next((n for prefix, n in PREPARED_DATA.items()
                         if osp.normpath(root).startswith(prefix)), None)
            if name is None:
                raise SystemExit(f'{cfg.filename}: {loader}.dataset.data_root {root} does '
                                 'not exist')
            run([sys.executable, 'tools/prepare_data.py', name], f'preparing {name}')


#: settings of a whole comparison that do not change any one of its runs
NOT_A_RUN_SETTING = ('seeds',)


def same_run_settings(done, wanted) -> bool:
    """Whether a finished run (settings ``done``) is the run ``wanted`` asks for.

    The other seeds of the call are not part of a run: seeds trained by separate
    calls (e.g. one per machine) are reused by a call with all of them.
    """
    if not isinstance(done, dict):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in NOT_A_RUN_SETTING}  # noqa: E731
    return strip(done) == strip(wanted)


def trained_run(path, settings):
    """The record of a run trained with these settings whose checkpoint is still there
    (written once training ends, so a failed or interrupted evaluation does not cost a
    second training); None otherwise."""
    if not osp.isfile(path):
        return None
    with open(path) as f:
        trained = json.load(f)
    if not same_run_settings(trained.get('settings'), settings) or \
            not osp.isfile(trained.get('checkpoint', '')):
        return None
    return trained


def train_and_evaluate(config, label, seed, run_dir, settings, args, protocol):
    """One run; its result dict (also saved as run_dir/result.json)."""
    result_path = osp.join(run_dir, 'result.json')
    if not args.force and osp.isfile(result_path):
        with open(result_path) as f:
            done = json.load(f)
        if same_run_settings(done.get('settings'), settings):
            print(f'[compare] {label} seed {seed}: reusing {result_path} (--force repeats it)')
            return dict(done, label=label)  # the name this call gives it
    os.makedirs(run_dir, exist_ok=True)
    work = osp.join(run_dir, 'train')
    cfg = run_config(config, seed, work, protocol, args.iters, args.seconds, args.fake_nums,
                     args.test_images, args.cfg_options)
    cfg_path = osp.join(run_dir, 'config.py')
    cfg.dump(cfg_path)
    trained_path = osp.join(run_dir, 'trained.json')
    trained = trained_run(trained_path, settings) if not args.force else None
    if trained:  # an earlier call trained it and stopped before the results: evaluate only
        print(f'[compare] {label} seed {seed}: reusing the trained {trained["checkpoint"]} '
              '(--force retrains it)')
        checkpoint, process_s = trained['checkpoint'], trained['train_process_seconds']
    else:
        process_s = run([sys.executable, 'tools/train.py', cfg_path, '--work-dir', work],
                        f'{label} seed {seed}: training', osp.join(run_dir, 'train.log'))
        with open(osp.join(work, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        with open(trained_path, 'w') as f:
            json.dump(dict(settings=settings, checkpoint=checkpoint,
                           train_process_seconds=round(process_s, 1)), f, indent=2)
    from mmintrovae.engine.time_budget import TRAIN_TIME_FILE
    with open(osp.join(work, TRAIN_TIME_FILE)) as f:
        timing = json.load(f)
    metrics_path = osp.join(run_dir, 'metrics.json')
    eval_s = run([sys.executable, 'tools/test.py', cfg_path, checkpoint, '--work-dir',
                  osp.join(run_dir, 'test'), '--out', metrics_path],
                 f'{label} seed {seed}: evaluation', osp.join(run_dir, 'test.log'))
    with open(metrics_path) as f:
        metrics = json.load(f)
    batch = cfg.train_dataloader.batch_size
    row = dict(label=label, config=config, seed=seed, config_used=cfg_path,
               checkpoint=checkpoint, has_encoder=has_encoder(cfg), batch_size=batch,
               iters=timing['iters'], train_seconds=timing['seconds'],
               stopped_by_budget=timing['stopped_by_budget'],
               images_per_second=timing['iters'] * batch / max(timing['seconds'], 1e-9),
               train_process_seconds=None if process_s is None else round(process_s, 1),
               eval_seconds=round(eval_s, 1),
               metrics=metrics, settings=settings)
    with open(result_path, 'w') as f:
        json.dump(row, f, indent=2)
    return row


# ------------------------------------------------------------------ summary
def mean_std(values):
    """(mean, sample standard deviation or None for one value) of the non-None values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(runs: list, cols: list) -> list:
    """Per label (in first-seen order): n, mean and spread of timing and every metric."""
    labels = list(dict.fromkeys(r['label'] for r in runs))
    summary = []
    for label in labels:
        rs = [r for r in runs if r['label'] == label]
        entry = dict(label=label, config=rs[0]['config'], seeds=[r['seed'] for r in rs],
                     has_encoder=rs[0].get('has_encoder', False))
        for key in ('iters', 'train_seconds', 'images_per_second'):
            mean, std = mean_std(r[key] for r in rs)
            entry[key] = dict(mean=mean, std=std)
        entry['metrics'] = {}
        for key, *_ in cols:
            values = [r['metrics'].get(key) for r in rs]
            mean, std = mean_std(values)
            if mean is not None:
                entry['metrics'][key] = dict(mean=mean, std=std,
                                             values=[v for v in values if v is not None])
        summary.append(entry)
    return summary


def _num(value, style):
    text = style.format(value)
    return text[1:] if text.startswith('-') and float(text) == 0 else text  # no '-0.0'


def fmt(stat, style='{:.1f}'):
    """'mean ± std', 'mean' for one run, 'n/a' without a value."""
    if not stat or stat.get('mean') is None:
        return 'n/a'
    text = _num(stat['mean'], style)
    if stat.get('std') is not None:
        text += ' ± ' + _num(stat['std'], style)
    return text


def describe_budget(settings) -> str:
    parts = []
    if settings.get('seconds'):
        parts.append(f"{settings['seconds']:g} s of training")
    if settings.get('iters'):
        parts.append(f"{settings['iters']} iterations")
    return ' or '.join(parts) + ' (whichever first)' if len(parts) > 1 else \
        (parts[0] if parts else "the recipes' own iterations")


def write_table(summary, cols, settings, path):
    head = ['model', 'config', 'seeds', 'iterations', 'train wall time (s)', 'images/s'] + \
        [f"{title} ({better})" if better else title for _, title, _, better in cols]
    lines = [
        f"Each model trained for {describe_budget(settings)} per seed on "
        f"{settings['machine']}; mean ± sample standard deviation over seeds "
        f"{', '.join(map(str, settings['seeds']))}. Evaluated on "
        f"{settings['test_images']} held-out images and {settings['fake_nums']} generated "
        'images per sample metric; reconstruction metrics only for models with an encoder. '
        'A difference counts only beyond the spreads.',
        '',
        '| ' + ' | '.join(head) + ' |',
        '|' + '---|' * len(head),
    ]
    for s in summary:
        cells = [s['label'], f"`{s['config']}`", str(len(s['seeds'])),
                 fmt(s['iters'], '{:.0f}'), fmt(s['train_seconds'], '{:.0f}'),
                 fmt(s['images_per_second'], '{:.1f}')]
        cells += [fmt(s['metrics'].get(key), style) for key, _, style, _ in cols]
        lines.append('| ' + ' | '.join(cells) + ' |')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


# ------------------------------------------------------------------ pictures
def load_model(config_used, checkpoint):
    from mmintrovae.apis import init_model
    return init_model(config_used, checkpoint, device='cpu')


def sample_images(model, num=64, seed=0, sample_model='orig'):
    """uint8 (num, H, W, C) prior samples of any MMagic generative model (its generator
    takes noise (N, noise_size)); the same latents for a seed. A model with its own prior
    (``prior_latents``: the aggregate posterior of the CPU recipes) maps the seeded eps
    through it, as its metrics sample, so the picture shows what the table judged."""
    import torch
    from mmintrovae.apis.images import to_uint8
    from mmintrovae.apis.sampling import generator_of, prior_noise
    generator = generator_of(model, sample_model)
    noise = prior_noise(model, num, seed)  # seeded eps, mapped by the model's prior if it has one
    with torch.no_grad():
        out = generator(noise.to(next(model.parameters()).device))
    if isinstance(out, dict):
        out = out['fake_img']
    return to_uint8(model, out)


def test_images_of(cfg_path, num):
    """The first ``num`` images of the run's test set, as uint8 (N, H, W, C) files."""
    from mmengine.config import Config
    from mmintrovae.apis import list_images
    cfg = Config.fromfile(cfg_path)
    root = cfg.test_dataloader.dataset.data_root
    root = root if osp.isabs(root) else osp.join(REPO, root)
    return list_images(root)[:num]


def reconstruction_grid(model, files, sample_model='orig'):
    """Rows of real images each above its reconstructions: uint8 grid (H, W, C)."""
    import numpy as np
    from mmintrovae.apis import make_grid, reconstruct_images
    inputs, recs = reconstruct_images(model, files, sample_model=sample_model,
                                      return_inputs=True)
    rows = []
    for start in range(0, len(inputs), 8):
        rows += [inputs[start:start + 8], recs[start:start + 8]]
    return make_grid(np.concatenate(rows), nrow=8)


def side_by_side(panels, labels, path, zoom=2, row_titles=None):
    """Panels (rows of uint8 HxWxC grids or None) in columns under their labels, on white.

    ``panels[i][j]``: row i, column j; None leaves a blank with a note.
    """
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font = ImageFont.load_default()

    def tile(grid):
        img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).convert('RGB')
        return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)

    tiles = [[None if g is None else tile(g) for g in row] for row in panels]
    ncol = max(len(row) for row in panels)
    col_w = [max((row[j].width for row in tiles if j < len(row) and row[j] is not None),
                 default=64) for j in range(ncol)]
    row_h = [max((t.height for t in row if t is not None), default=64) for row in tiles]
    label_h, gap = 32, 16
    width = sum(col_w) + gap * (ncol + 1)
    height = sum(row_h) + (label_h + gap) * len(tiles) + gap
    canvas = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(canvas)
    y = gap // 2
    for i, row in enumerate(tiles):
        x = gap
        for j in range(ncol):
            text = labels[j] + (f' - {row_titles[i]}' if row_titles else '')
            draw.text((x, y + 6), text, fill='black', font=font)
            t = row[j] if j < len(row) else None
            if t is None:
                draw.text((x, y + label_h + 6), '(no encoder)', fill='grey', font=font)
            else:
                canvas.paste(t, (x, y + label_h))
            x += col_w[j] + gap
        y += label_h + row_h[i] + gap
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path


def picture(summary, runs, path, seed=0, sample_model='auto'):
    """Samples (and reconstructions) of each config's first run, from the generator its
    metrics judged (``sample_model``: 'auto' is the EMA one where the model keeps one)."""
    from mmintrovae.apis import make_grid
    sample_model = None if sample_model == 'auto' else sample_model  # None: EMA if kept
    sample_row, rec_row = [], []
    for s in summary:
        first = next(r for r in runs if r['label'] == s['label'])
        model = load_model(first['config_used'], first['checkpoint'])
        sample_row.append(make_grid(sample_images(model, 64, seed, sample_model), nrow=8))
        rec_row.append(reconstruction_grid(model, test_images_of(first['config_used'], 32),
                                           sample_model) if first['has_encoder'] else None)
    rows = [sample_row] + ([rec_row] if any(g is not None for g in rec_row) else [])
    titles = ['samples', 'test images above reconstructions'][:len(rows)]
    return side_by_side(rows, [s['label'] for s in summary], path, row_titles=titles)


# ------------------------------------------------------------------ main
def machine() -> str:
    import torch
    text = f'{os.cpu_count()} CPU cores ({platform.machine()})'
    if torch.cuda.is_available():
        return text + f' and {torch.cuda.get_device_name(0)}'
    return text + ', no GPU'


def main(argv=None):
    args = parse_args(argv)
    import mmintrovae  # noqa: F401  (the DCGAN fix, metrics and the budget hook)
    from mmengine.config import Config
    protocol = load_protocol(args.protocol, args.metrics)
    cols = columns(protocol)
    labels = args.labels or [config_key(c) for c in args.configs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f'two configs share a name {labels}: give --labels')
    out = osp.abspath(args.out or osp.join('work_dirs', f'compare_{config_key(args.configs[0])}'))
    os.makedirs(out, exist_ok=True)

    cfgs = []
    for config in args.configs:
        cfg = Config.fromfile(resolve(config))
        cfg.merge_from_dict(dict(args.cfg_options))
        cfgs.append(cfg)
    if args.iters is None and args.seconds is None:
        recipe_iters = {c: cfg.train_cfg.max_iters for c, cfg in zip(args.configs, cfgs)}
        if len(set(recipe_iters.values())) > 1:
            raise SystemExit(f'[compare] the configs train for different numbers of iterations '
                             f'({recipe_iters}): give --iters and/or --seconds')
        args.iters = next(iter(recipe_iters.values()))
    test_images = args.test_images or cfgs[0].test_dataloader.dataset.get('max_images') or 'all'
    settings = dict(seconds=args.seconds, iters=args.iters, seeds=args.seeds,
                    fake_nums=args.fake_nums or protocol['fake_nums'], test_images=test_images,
                    metrics=[c[0] for c in cols], protocol=args.protocol,
                    cfg_options=[f'{k}={v}' for k, v in args.cfg_options.items()],
                    machine=machine())
    prepare_data(cfgs)

    runs = []
    for config, label in zip(args.configs, labels):
        for seed in args.seeds:
            run_dir = osp.join(out, config_key(config), f'seed{seed}')
            runs.append(train_and_evaluate(config, label, seed, run_dir,
                                           dict(settings, config=config), args, protocol))
    summary = summarise(runs, cols)
    table = write_table(summary, cols, settings, osp.join(out, 'comparison.md'))
    with open(osp.join(out, 'comparison.json'), 'w') as f:
        json.dump(dict(settings=settings, summary=summary, runs=runs), f, indent=2)
    pic = picture(summary, runs, osp.join(out, 'samples.png'), args.picture_seed,
                  protocol['sample_model'])
    print(open(table).read())
    print(f'[compare] wrote {table}, {osp.join(out, "comparison.json")} and {pic}')
    return summary


if __name__ == '__main__':
    main()
