"""Speed of the real IntroVAE training step, next to what the machine can do.

Everything is measured on the registered model built from a config through
MMagic's registries, with its optim wrappers built as the runner builds them
(``build_optim_wrapper``) and its data preprocessor, so the figures are those of
training. One *case* is (config, image size, batch size, update mode); for each:

- seconds per iteration of ``train_step`` on a fixed batch: ``repeats`` runs of
  ``iters`` iterations after ``warmup`` untimed ones (median and spread over the
  runs), images per second;
- FLOPs of one iteration (``torch.utils.flop_counter.FlopCounterMode`` around
  one ``train_step``: matmuls and convolutions, forward and backward; BatchNorm,
  activations and the optimizer count zero), achieved GFLOP/s, and that as a
  share of the machine's dense fp32 matmul GFLOP/s measured in the same case
  (``torch.mm`` of a size that keeps every core busy, median of repeats);
- peak memory: the process's resident set (VmHWM, reset per case) on CPU,
  ``torch.cuda.max_memory_allocated`` on GPU;
- data loading: the config's own train dataloader in a plain loop, the time
  spent waiting in ``next()`` against the whole iteration, and the CPU cost of
  one batch loaded in the main process (which on a small machine competes with
  the step even when workers hide the wait);
- optionally MMEngine's runner: ``Runner.train`` with the config's hooks (minus
  checkpoints, visualisation and validation) against the same train_step in the
  plain loop above, as the runner's overhead in percent.

Each case can also set the numeric precision (``precision``: 'fp32', 'tf32' --
TF32 matmuls and cuDNN convolutions on CUDA --, 'fp16' or 'bf16' -- both networks'
optim wrappers made :class:`~mmintrovae.engine.amp.IntroVAEAmpOptimWrapper` with that
autocast dtype, fp16 with dynamic loss scaling) and the memory format
(``memory_format``: 'channels_last' or 'contiguous' sets ``model.channels_last``;
'config' keeps the config's). The matmul roofline is then measured in the same
precision (fp16/bf16 operands; fp32 with TF32 allowed or not).

The VAE warm-up is switched off (``vae_warmup_iters=0``) so every timed
iteration is the full introspective step. The 1-minute load average is recorded
before and after every case: timings from a busy machine are only comparable
with the load beside them.
"""
import copy
import gc
import logging
import math
import os
import os.path as osp
import platform
import re
import statistics
import tempfile
import time
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import torch

# The recipe each resolution is benchmarked with when no config is given.
PRESETS = {
    32: 'configs/introvae_fashionmnist32.py',
    64: 'configs/introvae_emoji64.py',
    128: 'configs/introvae_celebahq128.py',
    256: 'configs/introvae_celebahq256.py',
    1024: 'configs/introvae_celebahq1024.py',
}
# Command-line names of the update modes -> model.update_mode
MODES = {'paper': 'alternating', 'alternating': 'alternating', 'simultaneous': 'simultaneous'}

#: Numeric precisions a case can run in (see the module docstring).
PRECISIONS = ('fp32', 'tf32', 'fp16', 'bf16')
#: Memory formats: 'config' keeps the config's ``model.channels_last``.
MEMORY_FORMATS = ('config', 'contiguous', 'channels_last')
_AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
_MATMUL_DTYPES = {'fp32': torch.float32, 'tf32': torch.float32, 'fp16': torch.float16,
                  'bf16': torch.bfloat16}

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


# ------------------------------------------------------------------ configs
def adapt_channels(channels: Sequence[int], image_size: int) -> List[int]:
    """A channel list for ``image_size`` from one made for another size.

    Entries are listed from high to low resolution: a smaller image drops
    leading entries, a larger one prepends halves of the first (at least 16).
    """
    n = int(math.log2(image_size // 4))
    channels = list(channels)
    while len(channels) > n:
        channels.pop(0)
    while len(channels) < n:
        channels.insert(0, max(16, channels[0] // 2))
    return channels


def load_config(config: str,
                image_size: Optional[int] = None,
                batch_size: Optional[int] = None,
                mode: str = 'paper',
                data_root: Optional[str] = None,
                cfg_options: Optional[dict] = None,
                precision: str = 'fp32',
                memory_format: str = 'config'):
    """The config of one case: resolution, batch size and update mode set,
    VAE warm-up off. ``data_root`` replaces the train image folder when the
    config's own does not exist (e.g. CelebA-HQ on a machine without it).
    ``precision`` 'fp16'/'bf16' makes both optim wrappers mixed precision in that
    dtype (as ``tools/train.py --amp``); ``memory_format`` sets
    ``model.channels_last`` unless 'config'."""
    from mmengine.config import Config

    from mmintrovae.engine.config import _enable_amp
    if mode not in MODES:
        raise ValueError(f'mode must be one of {sorted(MODES)}, got {mode!r}')
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f'memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if memory_format != 'config':
        cfg.model.channels_last = memory_format == 'channels_last'
    if precision in _AMP_DTYPES:
        _enable_amp(cfg)
        for sub in cfg.optim_wrapper.values():
            if isinstance(sub, dict) and 'optimizer' in sub:
                sub['dtype'] = _AMP_DTYPES[precision]
    arch = cfg.model.architecture
    dataset = cfg.train_dataloader.dataset
    if image_size and image_size != arch.image_size:
        arch.channels = adapt_channels(arch.channels, image_size)
        arch.image_size = image_size
    dataset.image_size = arch.image_size
    cfg.model.update_mode = MODES[mode]
    cfg.model.vae_warmup_iters = 0
    if batch_size:
        cfg.train_dataloader.batch_size = batch_size
    if not osp.isdir(dataset.data_root):
        if not data_root:
            raise FileNotFoundError(f'{config}: train images {dataset.data_root} not found; '
                                    'give another folder of images (data_root / --data-root)')
        dataset.data_root = data_root
    return cfg


# ----------------------------------------------------------------- machine
def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def load_average() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


@contextmanager
def precision_flags(precision: str, device: torch.device):
    """TF32 for matmuls and cuDNN convolutions on for 'tf32' and off otherwise, so
    'fp32' is plain fp32 (cuDNN's default is TF32); restored afterwards. TF32 is a
    CUDA setting and fp16 autocast needs a GPU: both are refused on other devices."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if device.type != 'cuda' and precision in ('tf32', 'fp16'):
        raise ValueError(f'precision {precision!r} needs a CUDA device, got {device}; '
                         "on CPU use 'fp32' or 'bf16'")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = (
        precision == 'tf32')
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def matmul_gflops(device: torch.device, n: Optional[int] = None, repeats: int = 5,
                  dtype: torch.dtype = torch.float32):
    """Dense ``torch.mm`` throughput of this machine now in ``dtype`` (median of
    ``repeats``; fp32 runs as TF32 where :func:`precision_flags` allows it), the
    roofline the step is compared with: (GFLOP per wall second, GFLOP per CPU
    second of this process)."""
    n = n or (8192 if device.type == 'cuda' else 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.mm(a, b)
    wall, cpu = [], []
    for _ in range(repeats):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        torch.mm(a, b, out=out)
        sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    flop = 2 * n**3 / 1e9
    return flop / statistics.median(wall), flop / statistics.median(cpu)


def reset_peak_memory(device: torch.device) -> str:
    """Start a new peak; returns what :func:`peak_memory_gib` will measure."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return 'torch.cuda.max_memory_allocated'
    try:  # Linux: writing 5 resets the peak resident set (VmHWM) of this process
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return 'peak RSS of the process (VmHWM, reset per case)'
    except OSError:
        return 'peak RSS of the process since its start (ru_maxrss)'


def peak_memory_gib(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        with open('/proc/self/status') as f:
            return int(re.search(r'VmHWM:\s+(\d+) kB', f.read()).group(1)) / 2**20
    except (OSError, AttributeError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def machine_info(device: torch.device) -> dict:
    info = dict(torch=torch.__version__, python=platform.python_version(),
                device=str(device), cpu=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                mkldnn=torch.backends.mkldnn.is_available())
    try:
        with open('/proc/cpuinfo') as f:
            info['cpu'] = re.search(r'model name\s*:\s*(.*)', f.read()).group(1)
    except (OSError, AttributeError):
        pass
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


# ----------------------------------------------------------------- measuring
def _enter_scope(cfg) -> None:
    """Register mmintrovae's modules and enter the config's default registry scope."""
    from mmengine.registry import init_default_scope
    import mmintrovae  # noqa: F401
    init_default_scope(cfg.get('default_scope', 'mmagic'))


def build_training(cfg, device: torch.device):
    """The registered model and its optim wrappers, as the runner builds them."""
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper

    from mmagic.registry import MODELS
    _enter_scope(cfg)
    model = MODELS.build(copy.deepcopy(cfg.model))
    if hasattr(model, 'init_weights'):  # as the runner does; without its per-weight report
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    model.to(device).train()
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    return model, optim_wrapper


def build_dataloader(cfg):
    """The config's train dataloader, built as the runner builds it."""
    from mmengine.runner import Runner
    _enter_scope(cfg)
    seed = cfg.get('randomness', {}).get('seed', 0)
    return Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=seed)


class _NoModuleTracking:
    """Stands in for FlopCounterMode's ModuleTracker, whose backward hooks break
    ``torch.autograd.grad`` on leaves (the simultaneous step): totals only."""
    parents = {'Global'}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def count_flops(model, optim_wrapper, batch) -> int:
    """FLOPs of one train_step (it trains: use it as a warm-up iteration)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    with counter:
        model.train_step(batch, optim_wrapper)
    return counter.get_total_flops()


def time_fixed_batch(model, optim_wrapper, batch, device, iters: int, repeats: int):
    """Wall and process CPU seconds per iteration of each of ``repeats`` runs of
    ``iters`` train_steps. CPU time (all threads) moves less than wall time when
    other jobs share the machine."""
    runs, cpu = [], []
    for _ in range(repeats):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            model.train_step(batch, optim_wrapper)
        sync(device)
        runs.append((time.perf_counter() - t0) / iters)
        cpu.append((time.process_time() - c0) / iters)
    return runs, cpu


def time_data_loop(model, optim_wrapper, iterator, device, iters: int, warmup: int) -> dict:
    """The plain training loop over the real dataloader: time in next() vs in the step."""
    fetch, step, cpu = [], [], []
    for i in range(warmup + iters):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = next(iterator)
        t1 = time.perf_counter()
        model.train_step(batch, optim_wrapper)
        sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            fetch.append(t1 - t0)
            step.append(t2 - t1)
            cpu.append(time.process_time() - c0)
    total = sum(fetch) + sum(step)
    return dict(iters=iters, fetch_s_per_iter=sum(fetch) / iters, outside_step_pct=100 * sum(
        fetch) / sum(step),
                step_s_per_iter=sum(step) / iters,
                s_per_iter_median=statistics.median(f + s for f, s in zip(fetch, step)),
                cpu_s_per_iter_median=statistics.median(cpu),
                wait_share_pct=100 * sum(fetch) / total)


def load_cost(dataloader, batches: int) -> float:
    """CPU seconds to load and collate one batch in this process (no workers)."""
    dataset, collate = dataloader.dataset, dataloader.collate_fn
    size = dataloader.batch_size
    t0 = time.perf_counter()
    for b in range(batches):
        collate([dataset[(b * size + i) % len(dataset)] for i in range(size)])
    return (time.perf_counter() - t0) / batches


def time_runner(cfg, iters: int, warmup: int) -> dict:
    """MMEngine's Runner.train (IterBasedTrainLoop) with the config's hooks minus
    checkpoints, visualisation and validation: seconds per iteration, taken from
    one before_train_iter to the next (data fetch, hooks and step included), and
    the seconds of the train_step inside each iteration, so that the time spent
    outside the step is known from the same iterations (see :func:`run_case`)."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class IterClock(Hook):
        def __init__(self):
            self.stamps, self.cpu_stamps = [], []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            sync(next(runner.model.parameters()).device)
            self.stamps.append(time.perf_counter())
            self.cpu_stamps.append(time.process_time())

        def after_train_epoch(self, runner):
            self.before_train_iter(runner, None)

    cfg = copy.deepcopy(cfg)
    with tempfile.TemporaryDirectory(prefix='introvae_bench_') as work_dir:
        cfg.work_dir = work_dir
        cfg.launcher = 'none'
        cfg.load_from, cfg.resume = None, False
        cfg.train_cfg = dict(by_epoch=False, max_iters=warmup + iters,
                             val_interval=warmup + iters + 1)
        for key in ('val_cfg', 'val_dataloader', 'val_evaluator', 'test_cfg',
                    'test_dataloader', 'test_evaluator'):
            cfg[key] = None
        cfg.default_hooks.checkpoint = None
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                            if h.get('type') != 'VisualizationHook']
        runner = Runner.from_cfg(cfg)
        clock = IterClock()
        runner.register_hook(clock, priority='VERY_HIGH')
        step_times = []
        model = runner.model
        train_step = model.train_step

        def timed_train_step(*args, **kwargs):
            t0 = time.perf_counter()
            out = train_step(*args, **kwargs)
            sync(next(model.parameters()).device)
            step_times.append(time.perf_counter() - t0)
            return out

        model.train_step = timed_train_step
        runner.train()
        del model, train_step, timed_train_step
        del runner
        gc.collect()
    per_iter = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])][warmup:]
    cpu = [b - a for a, b in zip(clock.cpu_stamps, clock.cpu_stamps[1:])][warmup:]
    step_times = step_times[warmup:]
    return dict(iters=len(per_iter), s_per_iter_median=statistics.median(per_iter),
                s_per_iter=per_iter, cpu_s_per_iter_median=statistics.median(cpu),
                train_step_s=step_times,
                outside_step_pct=100 * (sum(per_iter) / sum(step_times) - 1))


def run_case(config: str,
             image_size: Optional[int] = None,
             batch_size: Optional[int] = None,
             mode: str = 'paper',
             iters: int = 5,
             warmup: int = 1,
             repeats: int = 3,
             device: str = 'cpu',
             data_root: Optional[str] = None,
             cfg_options: Optional[dict] = None,
             data: bool = True,
             runner: bool = False,
             runner_iters: Optional[int] = None,
             precision: str = 'fp32',
             memory_format: str = 'config',
             matmul_size: Optional[int] = None) -> dict:
    """Measure one case; see the module docstring for what each field is."""
    device = torch.device(device)
    with precision_flags(precision, device):
        return _run_case(config, image_size, batch_size, mode, iters, warmup, repeats, device,
                         data_root, cfg_options, data, runner, runner_iters, precision,
                         memory_format, matmul_size)


def _run_case(config, image_size, batch_size, mode, iters, warmup, repeats, device,
              data_root, cfg_options, data, runner, runner_iters, precision, memory_format,
              matmul_size) -> dict:
    from mmengine import MessageHub
    cfg = load_config(config, image_size, batch_size, mode, data_root, cfg_options,
                      precision, memory_format)
    mm_dtype = _MATMUL_DTYPES[precision]
    arch, loader_cfg = cfg.model.architecture, cfg.train_dataloader
    result = dict(
        config=config, image_size=arch.image_size, batch_size=loader_cfg.batch_size,
        mode=mode, update_mode=cfg.model.update_mode, device=str(device),
        channels=list(arch.channels), latent_dim=arch.latent_dim,
        data_root=loader_cfg.dataset.data_root, iters=iters, warmup=warmup, repeats=repeats,
        torch_threads=torch.get_num_threads(), cfg_options=cfg_options or {},
        precision=precision, channels_last=bool(cfg.model.get('channels_last', False)),
        matmul_dtype=str(mm_dtype).replace('torch.', ''), loadavg_before=load_average())
    MessageHub.get_current_instance().update_info('iter', 0)
    model, optim_wrapper = build_training(cfg, device)
    result['params_m'] = sum(p.numel() for p in model.parameters()) / 1e6
    result['matmul_gflops_before'], mm_cpu_before = matmul_gflops(device, matmul_size,
                                                                  dtype=mm_dtype)

    memory_kind = reset_peak_memory(device)
    dataloader = build_dataloader(cfg)
    iterator = iter(dataloader)
    batch = next(iterator)  # worker start-up is not timed
    # One warm-up iteration runs under the FLOP counter; the rest as they are.
    flops = count_flops(model, optim_wrapper, batch)
    if data:
        result['data'] = dict(
            num_workers=loader_cfg.get('num_workers', 0),
            persistent_workers=loader_cfg.get('persistent_workers', False),
            pin_memory=loader_cfg.get('pin_memory', False),
            **time_data_loop(model, optim_wrapper, iterator, device, iters,
                             max(warmup - 1, 0)))
    del iterator
    if data:
        result['data']['load_cpu_s_per_batch'] = load_cost(dataloader, 2)
    del dataloader
    gc.collect()
    if not data:
        for _ in range(max(warmup - 1, 0)):
            model.train_step(batch, optim_wrapper)
    runs, cpu = time_fixed_batch(model, optim_wrapper, batch, device, iters, repeats)
    result['peak_memory_gib'] = peak_memory_gib(device)
    result['peak_memory_kind'] = memory_kind

    median = statistics.median(runs)
    result.update(
        s_per_iter_median=median, s_per_iter_min=min(runs), s_per_iter_max=max(runs),
        s_per_iter_runs=runs, spread_pct=100 * (max(runs) - min(runs)) / median,
        cpu_s_per_iter_median=statistics.median(cpu),
        images_per_s=loader_cfg.batch_size / median, gflop_per_iter=flops / 1e9,
        gflops=flops / 1e9 / median)
    if data:
        d = result['data']
        d['load_cpu_share_pct'] = 100 * d['load_cpu_s_per_batch'] / (
            d['load_cpu_s_per_batch'] + median)
    del model, optim_wrapper, batch
    gc.collect()
    if runner:
        r = time_runner(cfg, runner_iters or iters, max(warmup, 1))
        bare = result.get('data', {}).get('s_per_iter_median')
        r['bare_loop_s_per_iter_median'] = bare
        r['overhead_pct'] = 100 * (r['s_per_iter_median'] / bare - 1) if bare else None
        bare_cpu = result.get('data', {}).get('cpu_s_per_iter_median')
        r['overhead_cpu_pct'] = (100 * (r['cpu_s_per_iter_median'] / bare_cpu - 1)
                                 if bare_cpu else None)
        # Paired: time outside train_step per time inside it, runner vs bare loop.
        # Each side is taken from its own iterations only, so a change in the
        # machine's load between the two runs cancels out (the direct ratios
        # above do not; they need an idle machine).
        bare_outside = result.get('data', {}).get('outside_step_pct')
        r['overhead_paired_pct'] = (100 * ((1 + r['outside_step_pct'] / 100) /
                                           (1 + bare_outside / 100) - 1)
                                    if bare_outside is not None else None)
        result['runner'] = r
    result['matmul_gflops_after'], mm_cpu_after = matmul_gflops(device, matmul_size,
                                                                dtype=mm_dtype)
    result['matmul_gflops'] = statistics.median(
        [result['matmul_gflops_before'], result['matmul_gflops_after']])
    result['pct_of_matmul'] = 100 * result['gflops'] / result['matmul_gflops']
    if device.type == 'cpu':
        # The same comparison per CPU second of this process: steadier than wall
        # time when other jobs take the cores (both sides lose the same share).
        result['matmul_gflop_per_cpu_s'] = statistics.median([mm_cpu_before, mm_cpu_after])
        result['gflop_per_cpu_s'] = result['gflop_per_iter'] / result['cpu_s_per_iter_median']
        result['pct_of_matmul_cpu'] = 100 * result['gflop_per_cpu_s'] / result[
            'matmul_gflop_per_cpu_s']
    result['loadavg_after'] = load_average()
    return result


# ----------------------------------------------------------------- reporting
COLUMNS = [
    ('size', lambda r: f"{r['image_size']}"),
    ('batch', lambda r: f"{r['batch_size']}"),
    ('mode', lambda r: r['mode']),
    ('prec', lambda r: r.get('precision', 'fp32')),
    ('NHWC', lambda r: 'yes' if r.get('channels_last') else 'no'),
    ('s/iter', lambda r: f"{r['s_per_iter_median']:.3f}"),
    ('spread%', lambda r: f"{r['spread_pct']:.0f}"),
    ('img/s', lambda r: f"{r['images_per_s']:.2f}"),
    ('GFLOP/iter', lambda r: f"{r['gflop_per_iter']:.1f}"),
    ('GFLOP/s', lambda r: f"{r['gflops']:.1f}"),
    ('mm GFLOP/s', lambda r: f"{r['matmul_gflops']:.1f}"),
    ('%mm', lambda r: f"{r['pct_of_matmul']:.0f}"),
    ('%mm cpu', lambda r: f"{r['pct_of_matmul_cpu']:.0f}" if 'pct_of_matmul_cpu' in r else '-'),
    ('peak GiB', lambda r: f"{r['peak_memory_gib']:.2f}"),
    ('data wait%', lambda r: f"{r['data']['wait_share_pct']:.1f}" if 'data' in r else '-'),
    ('load cpu%', lambda r: f"{r['data']['load_cpu_share_pct']:.1f}" if 'data' in r else '-'),
    ('runner+%', lambda r: f"{r['runner']['overhead_pct']:.1f}"
     if r.get('runner', {}).get('overhead_pct') is not None else '-'),
    ('paired+%', lambda r: f"{r['runner']['overhead_paired_pct']:.1f}"
     if r.get('runner', {}).get('overhead_paired_pct') is not None else '-'),
    ('load', lambda r: f"{r['loadavg_before']}/{r['loadavg_after']}"),
]


def format_table(results: Sequence[Dict]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [[f(r) for _, f in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ['  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def _data_wait(r):
    return f"{r['data']['wait_share_pct']:.1f}" if r.get('data') else '-'


def _runner_overhead(r):
    runner = r.get('runner')
    if not runner:
        return 'not run'
    return f"{runner['overhead_pct']:.1f} ({runner['overhead_paired_pct']:+.1f})"


# The README's Performance table.
MARKDOWN_COLUMNS = [
    ('size', lambda r: f"{r['image_size']}"),
    ('batch', lambda r: f"{r['batch_size']}"),
    ('mode', lambda r: r['mode']),
    ('s/iter (median; min-max of the runs)', lambda r: f"{r['s_per_iter_median']:.3g} "
     f"({r['s_per_iter_min']:.3g}-{r['s_per_iter_max']:.3g})"),
    ('images/s', lambda r: f"{r['images_per_s']:.3g}"),
    ('GFLOP/iter', lambda r: f"{r['gflop_per_iter']:.4g}"),
    ('GFLOP/s', lambda r: f"{r['gflops']:.0f}"),
    ('% of matmul (matmul GFLOP/s)',
     lambda r: f"{r['pct_of_matmul']:.0f} ({r['matmul_gflops_before']:.0f})"),
    ('peak RSS GiB', lambda r: f"{r['peak_memory_gib']:.2f}"),
    ('waiting for data %', _data_wait),
    ('runner overhead % (time outside train_step, paired)', _runner_overhead),
    ('precision', lambda r: r.get('precision', 'fp32')),
    ('channels-last', lambda r: 'yes' if r.get('channels_last') else 'no'),
]


def format_markdown(results: Sequence[Dict]) -> str:
    """The README's table: one row per case."""
    lines = ['| ' + ' | '.join(name for name, _ in MARKDOWN_COLUMNS) + ' |',
             '|' + '---|' * len(MARKDOWN_COLUMNS)]
    lines += ['| ' + ' | '.join(f(r) for _, f in MARKDOWN_COLUMNS) + ' |' for r in results]
    return '\n'.join(lines)


def speedups(results: Sequence[Dict]) -> List[dict]:
    """Simultaneous vs paper images/s for every (config, size, batch) measured in both."""
    out = []
    for r in results:
        if r['update_mode'] != 'simultaneous':
            continue
        for p in results:
            if p['update_mode'] == 'alternating' and all(
                    p.get(k) == r.get(k) for k in ('config', 'image_size', 'batch_size',
                                                   'device', 'precision', 'channels_last')):
                out.append(dict(image_size=r['image_size'], batch_size=r['batch_size'],
                                config=r['config'],
                                simultaneous_over_paper=r['images_per_s'] / p['images_per_s'],
                                flop_ratio=p['gflop_per_iter'] / r['gflop_per_iter']))
    return out


__all__ = [
    'PRESETS', 'MODES', 'PRECISIONS', 'MEMORY_FORMATS', 'precision_flags', 'adapt_channels', 'load_config', 'matmul_gflops', 'run_case',
    'time_runner', 'format_table', 'format_markdown', 'speedups', 'machine_info', 'load_average'
]
