"""SWD whose image shape comes from the model, so one metric list serves every resolution."""
import logging
from typing import Optional

from mmagic.evaluation.metrics import SlicedWassersteinDistance
from mmagic.registry import METRICS
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..models.network_contract import image_shape_of


@METRICS.register_module()
class IntroVAESWD(SlicedWassersteinDistance):
    """MMagic's SWD (PGGAN's protocol) with ``image_shape`` optional.

    Without ``image_shape`` the Laplacian pyramid is laid out in ``prepare``
    from the evaluated model's image shape (C, H, W), probed from its
    generator (any MMagic generator), so a recipe that changes the resolution
    or the networks need not restate its metrics.
    """

    def __init__(self, fake_nums: int, image_shape: Optional[tuple] = None, **kwargs):
        kwargs.setdefault('sample_model', 'orig')
        super().__init__(fake_nums, image_shape or (3, 16, 16), **kwargs)
        self._shape_from_model = image_shape is None

    def prepare(self, module, dataloader) -> None:
        super().prepare(module, dataloader)
        # SWD draws one sample per real image it reads, so it never compares more pairs
        # than the reference holds; asking for more made MMagic's sampler refuse the
        # whole evaluation where SWD leads its group (a model without reconstruction
        # metrics, 835 emoji faces against 1,000 samples). Shrink to the reference, say so.
        dataset = getattr(dataloader, 'dataset', None)
        available = len(dataset) if dataset is not None else self.fake_nums
        if self.fake_nums > available:
            print_log(f'IntroVAESWD: {available} real images, fewer than fake_nums='
                      f'{self.fake_nums}; SWD compares {available} samples with them',
                      logger='current', level=logging.WARNING)
            self.fake_nums = self.real_nums = available
        if self._shape_from_model:
            model = module.module if is_model_wrapper(module) else module
            channels, size, width = image_shape_of(model)
            if size != width:
                raise ValueError(f'IntroVAESWD needs square images, the model makes {size}x{width}')
            self.image_shape = (channels, size, size)
            self.resolutions = []
            while size >= 16 and len(self.resolutions) < 4:
                self.resolutions.append(size)
                size //= 2
            self.n_pyramids = len(self.resolutions)
            self.real_results = [[] for _ in self.resolutions]
            self.fake_results = [[] for _ in self.resolutions]
