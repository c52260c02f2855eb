"""mmintrovae.engine.dcgan_init: MMagic's DCGAN networks initialise (and as the paper says)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from torch import nn

import mmintrovae  # noqa: F401  (applies the fix)
from conftest import REPO
from mmintrovae.engine import dcgan_init


def _build(cfg):
    from mmagic.registry import MODELS
    return MODELS.build(cfg)


def _mmagic_dcgan_model_cfg():
    """The model of MMagic's own CelebA DCGAN config (1024..128 channels), resolved by mim."""
    from mmengine.utils import get_installed_path
    return Config.fromfile(osp.join(get_installed_path('mmagic'), '.mim', 'configs', 'dcgan',
                                    'dcgan_1xb128-300kiters_celeba-cropped-64.py')).model


def _stats(module, kind):
    if kind == 'conv':
        layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    else:
        layers = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    weights = torch.cat([m.weight.detach().flatten() for m in layers])
    biases = [m.bias.detach() for m in layers if m.bias is not None]
    return layers, weights, biases


def test_mmagic_code_itself_crashes():
    """Without the fix MMagic 1.2.0's discriminator cannot be initialised (why the fix exists)."""
    from mmagic.models.editors.dcgan import DCGANDiscriminator
    disc = DCGANDiscriminator(input_scale=32, output_scale=4, out_channels=1, base_channels=8)
    original = DCGANDiscriminator.init_weights.__wrapped__
    with pytest.raises(UnboundLocalError, match='init_info'):
        original(disc)


@pytest.mark.parametrize('standalone', [True, False])
def test_mmagic_dcgan_config_initialises_as_the_paper_says(standalone):
    """MMagic's own DCGAN config: the networks alone and the whole model as the Runner calls it."""
    model = _build(_mmagic_dcgan_model_cfg())
    for net in (model.generator, model.discriminator):  # scramble, so a no-op would show
        for p in net.parameters():
            nn.init.uniform_(p, -3, 3)
    if standalone:
        model.generator.init_weights()
        model.discriminator.init_weights()
    else:
        model.init_weights()
    for net in (model.generator, model.discriminator):
        layers, w, biases = _stats(net, 'conv')
        assert len(layers) >= 5 and w.numel() > 1e5
        assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.02)
        assert all(torch.all(b == 0) for b in biases)
        layers, w, biases = _stats(net, 'bn')
        assert len(layers) >= 3
        assert w.mean().item() == pytest.approx(1.0, abs=3e-3)
        assert w.std().item() == pytest.approx(0.02, rel=0.1)
        assert len(biases) == len(layers) and all(torch.all(b == 0) for b in biases)


def test_plugin_dcgan_configs_build_and_train_one_step(tmp_path):
    """configs/dcgan_*.py: the IntroVAE recipes' widths, and one update changes both networks."""
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    from mmagic.structures import DataSample
    for name, size, ch, widths in [('dcgan_emoji64.py', 64, 3, (16, 128)),
                                   ('dcgan_fashionmnist32.py', 32, 1, (32, 128))]:
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        model = _build(cfg.model)
        model.init_weights()
        gen_convs = [m for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d)]
        disc_convs = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d)]
        assert gen_convs[0].out_channels == widths[1] and gen_convs[-2].out_channels == widths[0]
        assert disc_convs[0].out_channels == widths[0] and disc_convs[-2].out_channels == widths[1]
        out = model.generator(None, num_batches=2)
        assert out.shape == (2, ch, size, size) and out.abs().max() <= 1
        wrappers = OptimWrapperDict(**{
            k: OptimWrapper(torch.optim.Adam(getattr(model, k).parameters(), lr=1e-3))
            for k in ('generator', 'discriminator')})
        before = [p.detach().clone() for p in model.parameters()]
        imgs = [torch.randint(0, 256, (ch, size, size)).float() for _ in range(4)]
        data = dict(inputs=[{} for _ in imgs],
                    data_samples=[DataSample(gt_img=i, metainfo=dict(gt_channel_order='RGB'))
                                  for i in imgs])
        MessageHub.get_current_instance().update_info('iter', 0)  # as the train loop sets it
        log = model.train_step(data, wrappers)
        assert 'loss_disc_fake' in log and 'loss_gen' in log
        changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
        assert sum(changed) > len(changed) // 2


def test_pretrained_init_cfg_still_loads_the_checkpoint(tmp_path):
    from mmagic.models.editors.dcgan import DCGANGenerator
    src = DCGANGenerator(output_scale=16, base_channels=16, noise_size=8)
    path = str(tmp_path / 'g.pth')
    torch.save(dict(state_dict=src.state_dict()), path)
    net = DCGANGenerator(output_scale=16, base_channels=16, noise_size=8,
                         init_cfg=dict(type='Pretrained', checkpoint=path))
    net.init_weights()
    for (k, a), b in zip(src.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_fix_touches_only_the_two_dcgan_networks():
    from mmagic.registry import MODELS
    assert [c.__name__ for c in dcgan_init.patch_dcgan_init_weights()] == \
        ['DCGANGenerator', 'DCGANDiscriminator']
    marker = dcgan_init._PATCHED_ATTR
    patched = sorted(name for name, cls in MODELS.module_dict.items()
                     if isinstance(cls, type) and getattr(getattr(cls, 'init_weights', None),
                                                          marker, False))
    assert patched == ['DCGANDiscriminator', 'DCGANGenerator']
    # idempotent: a second patch does not wrap the wrapper
    from mmagic.models.editors.dcgan import DCGANGenerator
    fn = DCGANGenerator.init_weights
    dcgan_init.patch_dcgan_init_weights()
    assert DCGANGenerator.init_weights is fn
    assert 'update_init_info' in DCGANGenerator.init_weights.__wrapped__.__code__.co_names


def test_other_modules_initialise_as_before():
    """MMEngine's BaseModule.init_weights is untouched: an init_cfg still rules other modules."""
    from mmengine.model import BaseModule

    class Net(BaseModule):
        def __init__(self):
            super().__init__(init_cfg=dict(type='Constant', layer='Conv2d', val=0.5, bias=0.25))
            self.conv = nn.Conv2d(2, 2, 3)
            self.bn = nn.BatchNorm2d(2)

    net = Net()
    net.init_weights()
    assert torch.all(net.conv.weight == 0.5) and torch.all(net.conv.bias == 0.25)
    assert torch.all(net.bn.weight == 1) and torch.all(net.bn.bias == 0)  # PyTorch's defaults
    assert not getattr(BaseModule.init_weights, dcgan_init._PATCHED_ATTR, False)
