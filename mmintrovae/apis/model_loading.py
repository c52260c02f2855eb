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
        load_weights(model, checkpoint, trusted=trusted)
    model.cfg = cfg
    return model.to(device).eval()


def load_weights(model: nn.Module, checkpoint: str, strict: bool = True,
                 trusted: bool = False) -> dict:
    """Load a checkpoint's ``state_dict`` into ``model``; returns the checkpoint's ``meta``.

    Keys from a (distributed) model wrapper (``module.``) are stripped. With
    ``strict``, missing or unexpected keys raise, naming a few of them: the
    config most likely differs from the one the checkpoint was trained with.
    """
    # Imported here so the loader can be swapped in one line.
    from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
    ckpt = load_checkpoint_safely(checkpoint, map_location='cpu', trusted=trusted)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{checkpoint}: expected a dict checkpoint, got {type(ckpt).__name__}')
    state = ckpt.get('state_dict', ckpt)
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise RuntimeError(f'{checkpoint} does not fit the model built from the config '
                           f'(architecture differs?): {e}') from None
    if strict and (missing or unexpected):
        raise RuntimeError(
            f'{checkpoint} does not fit the model built from the config: '
            f'missing keys {missing[:5]}{"..." if len(missing) > 5 else ""}, '
            f'unexpected keys {unexpected[:5]}{"..." if len(unexpected) > 5 else ""} '
            '(architecture or ema_config differs?)')
    return ckpt.get('meta', {}) or {}


def _check_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device} requested but CUDA is not available '
                         '(use --device cpu)')
    return device
