"""Turns tools/train.py and tools/test.py command-line options into config settings."""
import os.path as osp

from mmengine.config import Config
from mmengine.hooks import Hook

from .auto_resume import checkpoint_templates


def _default_work_dir(cfg: Config, config_path: str) -> str:
    if cfg.get('work_dir', None):
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def apply_train_args(cfg: Config, args) -> Config:
    """work dir, launcher, --resume (latest or a path) and --amp."""
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or _default_work_dir(cfg, args.config)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f'--resume: checkpoint file not found: {args.resume}')
        _refuse_damaged(args.resume, checkpoint_templates(cfg))
        cfg.resume, cfg.load_from = True, args.resume
    if args.amp:
        _enable_amp(cfg)
    return cfg


def _refuse_damaged(path: str, templates) -> None:
    """An explicit --resume PATH must be intact: stop with a message naming it (and the
    newest intact checkpoint beside it) rather than torch's raw zip error."""
    from .auto_resume import newest_intact_checkpoint
    from .checkpoint_integrity import DamagedCheckpointError, checkpoint_damage
    reason = checkpoint_damage(path)
    if reason is None:
        return
    intact, _ = newest_intact_checkpoint(osp.dirname(osp.abspath(path)), templates,
                                         exclude=[path])
    hint = (f'The newest intact checkpoint in its folder is {intact}: resume from it with '
            f'--resume {intact}, or use --resume without a path.' if intact else
            'Its folder holds no other intact checkpoint.')
    raise SystemExit(f'--resume: {DamagedCheckpointError(path, reason, hint)}')


def apply_test_args(cfg: Config, args) -> Config:
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or _default_work_dir(cfg, args.config)
    cfg.load_from = args.checkpoint
    return cfg


def _enable_amp(cfg: Config) -> None:
    """Make every sub-wrapper of a MultiOptimWrapperConstructor config an
    IntroVAEAmpOptimWrapper (see :mod:`mmintrovae.engine.amp`): fp16 with dynamic loss
    scaling on GPUs, bf16 autocast on CPUs that support it, else an fp32 fallback (logged).

    MMEngine's own --amp handling only rewrites a single top-level wrapper,
    which silently does nothing for IntroVAE's encoder/generator pair, and its
    AmpOptimWrapper asserts a GPU.
    """
    wrappers = cfg.optim_wrapper
    subs = [v for v in wrappers.values() if isinstance(v, dict) and 'optimizer' in v]
    for sub in subs or [wrappers]:
        if sub.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                   'IntroVAEAmpOptimWrapper'):
            raise SystemExit(f'--amp: cannot combine with optim wrapper type {sub["type"]!r}')
        sub['type'] = 'IntroVAEAmpOptimWrapper'
        sub.setdefault('loss_scale', 'dynamic')


def build_runner(cfg: Config):
    """The runner named by ``cfg.runner_type`` (the recipes: IntroVAERunner), else
    MMEngine's Runner: what MMagic's own tools/train.py does. For auto-resume, a damaged
    newest checkpoint is set aside first (:mod:`.auto_resume`)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if cfg.get('resume') and cfg.get('load_from') is None:
        # --resume without a path: make last_checkpoint name an intact checkpoint before
        # MMEngine reads it (after the runner exists: the process group decides once).
        from .auto_resume import prepare_auto_resume
        prepare_auto_resume(runner.work_dir, checkpoint_templates(cfg))
    return runner


class MetricsKeeper(Hook):
    """Keeps the test epoch's metrics: MMagic's MultiTestLoop.run returns None."""

    metrics = None

    def after_test_epoch(self, runner, metrics=None) -> None:
        self.metrics = metrics
