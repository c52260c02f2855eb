"""The encoder's KL divergences on real images, reconstructions and samples."""
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import all_gather_object
from mmengine.evaluator import BaseMetric
from mmengine.model import is_model_wrapper
from mmengine.structures import BaseDataElement
from mmagic.registry import METRICS
from torch import nn
from torch.utils.data import DataLoader

KL_KEYS = ('kl_real', 'kl_rec', 'kl_fake')


@METRICS.register_module()
class IntroVAEKL(BaseMetric):
    """Dataset means of the per-image ``kl_real``, ``kl_rec`` and ``kl_fake``.

    ``IntroVAE.val_step``/``test_step`` give every image of a batch with real
    images the KL divergence (to the prior) of the encoder's posterior for the
    real image x (``kl_real``), its reconstruction G(mu(x)) (``kl_rec``) and a
    prior sample G(z_p) (``kl_fake``). This metric averages each over the
    images and reports ``kl_real``, ``kl_rec``, ``kl_fake`` and
    ``kl_fake_minus_real`` (mean kl_fake - mean kl_real: how well the encoder
    tells samples from real images), under the prefix 'kl' by default
    ('kl/kl_real', ...).

    Works with MMagic's ``MultiValLoop``/``MultiTestLoop`` (it reads the val
    dataloader like MMagic's PSNR/SSIM: ``SAMPLER_MODE = 'normal'``) and with
    MMEngine's ``ValLoop``; results are gathered over ranks by
    :class:`~mmengine.evaluator.BaseMetric` (padding of the distributed
    sampler is dropped by the dataset size).

    Args:
        sample_model (str): Which results to read when the model returns both
            ('ema/orig'): 'orig' or 'ema'. Otherwise the top-level fields are
            read, whichever generator produced them.
        collect_device (str): 'cpu' or 'gpu', for gathering results.
        prefix (str, optional): Prefix of the metric names. Defaults to 'kl'.
    """
    default_prefix = 'kl'
    SAMPLER_MODE = 'normal'

    def __init__(self,
                 sample_model: str = 'orig',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if sample_model not in ('orig', 'ema'):
            raise ValueError(f"sample_model must be 'orig' or 'ema', got {sample_model!r}")
        self.sample_model = sample_model
        self.size: Optional[int] = None

    # ------------------------------------------------ MMagic evaluator interface
    def prepare(self, module: nn.Module, dataloader: DataLoader) -> None:
        """Called by MMagic's Evaluator before evaluation: records the dataset size."""
        self.size = len(dataloader.dataset)
        if is_model_wrapper(module):
            module = module.module
        self.data_preprocessor = getattr(module, 'data_preprocessor', None)

    def get_metric_sampler(self, model: nn.Module, dataloader: DataLoader, metrics) -> DataLoader:
        """The val dataloader itself: the model needs real images for the KLs."""
        return dataloader

    # ------------------------------------------------------------------ metric
    def process(self, data_batch, data_samples: Sequence) -> None:
        """Store (sum, count) of each KL of every sample.

        One result per sample, also for samples without KLs (a batch without
        real images), so that the distributed collection, which drops the
        sampler's padding by position, stays aligned.
        """
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            nested = sample.get(self.sample_model)
            if isinstance(nested, BaseDataElement):
                nested = nested.to_dict()
            if isinstance(nested, dict):
                sample = nested
            result = {}
            for key in KL_KEYS:
                if key in sample and sample[key] is not None:
                    value = torch.as_tensor(sample[key]).detach().to('cpu', torch.float64)
                    value = value.reshape(-1)
                    result[key] = (float(value.sum()), int(value.numel()))
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        sums = {key: 0.0 for key in KL_KEYS}
        counts = {key: 0 for key in KL_KEYS}
        for result in results:
            for key, (total, count) in result.items():
                sums[key] += total
                counts[key] += count
        metrics = {key: sums[key] / counts[key] for key in KL_KEYS if counts[key] > 0}
        if 'kl_real' in metrics and 'kl_fake' in metrics:
            metrics['kl_fake_minus_real'] = metrics['kl_fake'] - metrics['kl_real']
        if not metrics:
            warnings.warn('IntroVAEKL found no kl_real/kl_rec/kl_fake in the model outputs: '
                          'they are computed only for batches with real images (gt_img)')
        return metrics

    def evaluate(self, size: Optional[int] = None) -> dict:
        """MMEngine's Evaluator passes the dataset size; MMagic's passes nothing."""
        if size is None:
            size = self.size
        if size is None:  # neither: everything that was processed, over all ranks
            size = sum(all_gather_object(len(self.results)))
        return super().evaluate(size)


__all__ = ['IntroVAEKL', 'KL_KEYS']
