"""SWD whose image shape comes from the model, so one metric list serves every resolution."""
from typing import Optional

from mmagic.evaluation.metrics import SlicedWassersteinDistance
from mmagic.registry import METRICS
from mmengine.model import is_model_wrapper


@METRICS.register_module()
class IntroVAESWD(SlicedWassersteinDistance):
    """MMagic's SWD (PGGAN's protocol) with ``image_shape`` optional.

    Without ``image_shape`` the Laplacian pyramid is laid out in ``prepare``
    from the evaluated model's generator (image_channels, image_size), so a
    recipe that changes the resolution need not restate its metrics.
    """

    def __init__(self, fake_nums: int, image_shape: Optional[tuple] = None, **kwargs):
        kwargs.setdefault('sample_model', 'orig')
        super().__init__(fake_nums, image_shape or (3, 16, 16), **kwargs)
        self._shape_from_model = image_shape is None

    def prepare(self, module, dataloader) -> None:
        super().prepare(module, dataloader)
        if self._shape_from_model:
            model = module.module if is_model_wrapper(module) else module
            generator = model.generator
            size = generator.image_size
            self.image_shape = (generator.image_channels, size, size)
            self.resolutions = []
            while size >= 16 and len(self.resolutions) < 4:
                self.resolutions.append(size)
                size //= 2
            self.n_pyramids = len(self.resolutions)
            self.real_results = [[] for _ in self.resolutions]
            self.fake_results = [[] for _ in self.resolutions]
