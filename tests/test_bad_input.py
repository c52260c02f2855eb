"""Bad input gives errors that name the culprit: checkpoints of another architecture
(init_model / load_weights) and channel lists that do not fit the resolution.

Bad image files: tests/test_datasets.py. Missing or empty data folders:
tests/test_datasets.py and tests/test_train_recipes.py. Channel lists at the
network level: tests/test_networks.py.
"""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs/introvae_fashionmnist32.py')
TINY = {'model.architecture.channels': (8, 16, 16), 'model.architecture.latent_dim': 8}


def save_checkpoint(tmp_path, cfg_options, name='ckpt.pth', with_cfg=True):
    """A checkpoint as MMEngine writes it (state_dict + meta['cfg']) of a tiny model."""
    from mmintrovae.apis import init_model
    model = init_model(CONFIG, cfg_options=cfg_options)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(cfg_options)
    meta = dict(cfg=cfg.pretty_text) if with_cfg else {}
    path = str(tmp_path / name)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


def test_checkpoint_of_another_architecture_lists_keys_and_shapes(tmp_path):
    from mmintrovae.apis import init_model
    from mmintrovae.apis.model_loading import CheckpointMismatchError
    ckpt = save_checkpoint(tmp_path, TINY)
    # (8, 16, 16) -> (8, 16, 32): other shapes, and the 16->32 block gains a 1x1 projection
    other = dict(TINY, **{'model.architecture.channels': (8, 16, 32)})
    with pytest.raises(CheckpointMismatchError) as e:
        init_model(CONFIG, ckpt, cfg_options=other)
    msg = str(e.value)
    assert ckpt in msg and CONFIG in msg and 'does not fit' in msg
    n_shapes = int(re.search(r'(\d+) tensors with different shapes', msg).group(1))
    n_missing = int(re.search(r'(\d+) missing keys', msg).group(1))
    assert n_shapes > 5 and n_missing > 0, msg
    assert re.search(r'(encoder|generator)\.\S+ \(\d+(, \d+)*\) vs \(\d+(, \d+)*\)', msg), msg
    assert 'more)' in msg  # a few names each, not hundreds
    assert 'channels=(8, 16, 16)' in msg and 'latent_dim=8' in msg  # what it was trained with
    assert len(msg) < 3000


def test_unexpected_keys_are_listed(tmp_path):
    from mmintrovae.apis import init_model
    ckpt = save_checkpoint(tmp_path, dict(TINY, **{'model.architecture.channels': (8, 16, 32)}),
                           with_cfg=False)
    with pytest.raises(RuntimeError) as e:
        init_model(CONFIG, ckpt, cfg_options=TINY)
    assert re.search(r'2 unexpected keys \(in the checkpoint, not in the model\): '
                     r'\S+\.shortcut\.weight, \S+\.shortcut\.weight', str(e.value)), e.value
    assert 'trained with model.architecture' not in str(e.value)  # no cfg in its meta


def test_other_latent_dim_reports_shapes_only(tmp_path):
    from mmintrovae.apis import init_model
    ckpt = save_checkpoint(tmp_path, TINY)
    with pytest.raises(RuntimeError) as e:
        init_model(CONFIG, ckpt, cfg_options=dict(TINY, **{'model.architecture.latent_dim': 4}))
    msg = str(e.value)
    assert 'tensors with different shapes' in msg and 'missing keys' not in msg
    assert re.search(r'encoder\.fc\S* \(16, \d+\) vs \(8, \d+\)', msg), msg  # 2 * latent_dim


def test_load_weights_non_strict_still_refuses_other_shapes(tmp_path):
    from mmintrovae.apis import init_model, load_weights
    ckpt = save_checkpoint(tmp_path, TINY)
    model = init_model(CONFIG, cfg_options=dict(TINY, **{'model.architecture.latent_dim': 4}))
    with pytest.raises(RuntimeError, match='different shapes'):
        load_weights(model, ckpt, strict=False)
    # and a fitting checkpoint loads, returning its meta
    model = init_model(CONFIG, cfg_options=TINY)
    assert 'cfg' in load_weights(model, ckpt)


def test_checkpoint_without_ema_for_an_ema_config(tmp_path):
    from mmintrovae.apis import init_model
    ckpt = save_checkpoint(tmp_path, TINY)
    with pytest.raises(RuntimeError, match='Only EMA weights are missing'):
        init_model(CONFIG, ckpt, cfg_options=dict(TINY, **{
            'model.ema_config': dict(type='ExponentialMovingAverage', momentum=0.999)}))


def test_config_object_is_named_by_its_file(tmp_path):
    from mmintrovae.apis import init_model
    ckpt = save_checkpoint(tmp_path, TINY)
    cfg = Config.fromfile(CONFIG)
    with pytest.raises(RuntimeError, match=re.escape(CONFIG)):
        init_model(cfg, ckpt, cfg_options=dict(TINY, **{'model.architecture.latent_dim': 4}))


def test_checkpoint_cfg_text_is_never_executed(tmp_path):
    """The architecture shown in the error is read with ast, not by running the text."""
    from mmintrovae.apis import init_model
    path = str(tmp_path / 'evil.pth')
    marker = tmp_path / 'ran'
    cfg_text = (f"open({str(marker)!r}, 'w')\n"
                "model = dict(architecture=dict(channels=(1, 2), latent_dim=__import__('os')))\n")
    torch.save(dict(state_dict={'encoder.bogus': torch.zeros(1)}, meta=dict(cfg=cfg_text)), path)
    with pytest.raises(RuntimeError, match='unexpected keys'):
        init_model(CONFIG, path, cfg_options=TINY)
    assert not marker.exists()


def test_channel_list_that_does_not_fit_the_resolution_names_it():
    from mmintrovae.apis import init_model
    with pytest.raises(ValueError, match=r'channels'):
        init_model(CONFIG, cfg_options={'model.architecture.channels': (8, 16)})
