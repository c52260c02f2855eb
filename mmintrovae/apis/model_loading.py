"""Build an IntroVAE from a config and load its weights for inference."""
import copy
import os
import os.path as osp
import re
from typing import Optional, Union

import torch
from mmengine.config import Config
from torch import nn


def init_model(config: Union[str, os.PathLike, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               cfg_options: Optional[dict] = None,
               trusted: bool = False) -> nn.Module:
    """Build ``config.model`` through MMagic's MODELS registry, load weights, eval mode.

    Only the model is built: no dataset, dataloader, optimizer or runner, so no
    training data is needed.

    Args:
        config: A config file path or a :class:`Config` (copied, not modified).
        checkpoint: An MMEngine checkpoint (``state_dict`` key) or a bare
            state dict file; None keeps the initial weights.
        device: 'cpu', 'cuda', 'cuda:1', ...
        cfg_options: Overrides merged into the config, e.g.
            ``{'model.architecture.latent_dim': 64}``.
        trusted: Load the checkpoint with plain ``torch.load(weights_only=False)``
            (arbitrary code). Default: the safe, allow-listing loader.

    Returns:
        The model on ``device`` in eval mode, with the config as ``model.cfg``.
    """
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, (str, os.PathLike)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        cfg = Config.fromfile(config)
    else:
        raise TypeError(f'config must be a path or a Config, got {type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    device = _check_device(device)

    from mmagic.registry import MODELS
    from mmengine.registry import init_default_scope

    # Registers IntroVAE even for a Config without custom_imports.
    from .. import models  # noqa: F401
    # Nested types ('DataPreprocessor', ...) resolve through the default scope.
    init_default_scope(cfg.get('default_scope', None) or 'mmagic')
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        config_name = (os.fspath(config) if isinstance(config, (str, os.PathLike)) else
                       getattr(cfg, 'filename', None) or '<Config object>')
        load_weights(model, checkpoint, trusted=trusted, config=config_name)
    model.cfg = cfg
    return model.to(device).eval()


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not fit the model built from the config."""


def load_weights(model: nn.Module, checkpoint: str, strict: bool = True,
                 trusted: bool = False, config: Optional[str] = None) -> dict:
    """Load a checkpoint's ``state_dict`` into ``model``; returns the checkpoint's ``meta``.

    Keys from a (distributed) model wrapper (``module.``) are stripped. Tensors
    whose shapes differ always raise :class:`CheckpointMismatchError`; with
    ``strict`` (default) so do missing and unexpected keys. The error counts each
    kind, names a few keys of each (with both shapes), names the checkpoint and
    ``config`` (the config file the model was built from, for the message) and,
    when the checkpoint records its training config, the architecture it was
    trained with.
    """
    # Imported here so the loader can be swapped in one line.
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    ckpt = load_checkpoint_safely(checkpoint, map_location='cpu', trusted=trusted)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{checkpoint}: expected a dict checkpoint, got {type(ckpt).__name__}')
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict):
        raise ValueError(f'{checkpoint}: its state_dict is a {type(state).__name__}, not a dict')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, _shape(state[k]), _shape(expected[k])) for k in state
                  if k in expected and _shape(state[k]) != _shape(expected[k])]
    if mismatched or (strict and (missing or unexpected)):
        raise CheckpointMismatchError(_mismatch_message(
            checkpoint, config, ckpt.get('meta'), missing if strict else [],
            unexpected if strict else [], mismatched))
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return ckpt.get('meta', {}) or {}


def _shape(value):
    return tuple(value.shape) if hasattr(value, 'shape') else None


def _few(items, n=5):
    shown = ', '.join(items[:n])
    return shown + (f', ... ({len(items) - n} more)' if len(items) > n else '')


def _mismatch_message(checkpoint, config, meta, missing, unexpected, mismatched) -> str:
    source = f'the config {config}' if config else 'the config'
    lines = [f'Checkpoint {checkpoint} does not fit the model built from {source}: it was '
             'trained with another architecture (compare model.architecture: image_size, '
             'channels, latent_dim, image_channels; or model.encoder and model.generator; '
             'and ema_config).']
    if mismatched:
        lines.append(f'  {len(mismatched)} tensors with different shapes (checkpoint vs '
                     'model): ' + _few([f'{k} {tuple(a)} vs {tuple(b)}'
                                        for k, a, b in mismatched]))
    if missing:
        lines.append(f'  {len(missing)} missing keys (in the model, not in the checkpoint): '
                     + _few(missing))
    if unexpected:
        lines.append(f'  {len(unexpected)} unexpected keys (in the checkpoint, not in the '
                     'model): ' + _few(unexpected))
    ema = 'generator_ema.'
    if missing and all(k.startswith(ema) for k in missing):
        lines.append('  Only EMA weights are missing: the config has ema_config, the '
                     'checkpoint was trained without it.')
    elif unexpected and all(k.startswith(ema) for k in unexpected):
        lines.append('  Only EMA weights are unexpected: the checkpoint was trained with '
                     'ema_config, the config has none.')
    trained = _trained_architecture(meta)
    if trained:
        lines.append(f'  The checkpoint was trained with model.architecture = {trained}.')
    return '\n'.join(lines)


def _trained_architecture(meta) -> Optional[str]:
    """``model.architecture`` of the config text MMEngine stores in ``meta['cfg']``, read
    with ``ast`` (never executed: the checkpoint may not be trusted); None if absent."""
    import ast
    text = (meta or {}).get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        for node in ast.parse(text).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == 'model'
                    and isinstance(node.value, ast.Call)):
                for kw in node.value.keywords:
                    if kw.arg == 'architecture' and isinstance(kw.value, ast.Call):
                        return 'dict(' + ', '.join(
                            f'{a.arg}={ast.literal_eval(a.value)!r}'
                            for a in kw.value.keywords) + ')'
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return None
    return None


def _check_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device} requested but CUDA is not available '
                         '(use --device cpu)')
    return device
