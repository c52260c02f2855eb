import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


@pytest.fixture(autouse=True)
def mmagic_scope():
    """Build MMagic's modules by their short names, as configs do (default_scope='mmagic').

    Per test: an in-process Runner in an earlier test leaves its own scope current."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmagic')


@pytest.fixture
def tiny_introvae():
    """A factory for a small IntroVAE (32x32 by default) with SGD optimizers.

    SGD with lr=1 makes each parameter's update equal to minus its gradient,
    so tests can read back exactly which gradient each network received.
    """
    import torch
    from mmengine.optim import OptimWrapper, OptimWrapperDict

    from mmintrovae.models import IntroVAE

    def build(image_size=32, channels=(8, 16, 16), latent_dim=8, image_channels=3, lr=1.0,
              **loss_kwargs):
        torch.manual_seed(0)
        arch = dict(image_size=image_size, channels=channels, latent_dim=latent_dim,
                    image_channels=image_channels)
        model = IntroVAE(
            encoder=dict(type='IntroVAEEncoder'),
            generator=dict(type='IntroVAEGenerator'),
            architecture=arch,
            data_preprocessor=dict(type='DataPreprocessor', mean=[0.0] * image_channels,
                                   std=[255.0] * image_channels),
            **loss_kwargs)
        wrappers = OptimWrapperDict(
            encoder=OptimWrapper(torch.optim.SGD(model.encoder.parameters(), lr=lr)),
            generator=OptimWrapper(torch.optim.SGD(model.generator.parameters(), lr=lr)))
        return model, wrappers

    return build


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def make_batch(n=4, size=32, channels=3, seed=1):
    """A batch as MMagic's dataloader gives it: empty inputs, images in gt_img.

    Returns the batch and the images as the model sees them ((N, C, H, W) in [0, 1]).
    """
    import torch
    from mmagic.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    imgs = [torch.randint(0, 256, (channels, size, size), generator=g).float() for _ in range(n)]
    # channel_order 'single'/'rgb' keeps the preprocessor from flipping channels
    samples = [DataSample(gt_img=img, metainfo=dict(gt_channel_order='RGB')) for img in imgs]
    return dict(inputs=[{} for _ in range(n)], data_samples=samples), torch.stack(imgs) / 255.0

