"""Mixed precision for both of IntroVAE's optim wrappers, on GPUs and on CPUs.

``tools/train.py --amp`` makes the encoder's and the generator's wrapper an
:class:`IntroVAEAmpOptimWrapper`:

* with an accelerator (CUDA): MMEngine's ``AmpOptimWrapper`` unchanged -- fp16 autocast
  with dynamic loss scaling by default, or ``dtype='bfloat16'``
  (``--cfg-options optim_wrapper.encoder.dtype=bfloat16 optim_wrapper.generator.dtype=bfloat16``)
  on GPUs that support it;
* on CPU (where MMEngine's ``AmpOptimWrapper`` asserts a GPU): bf16 autocast when the CPU
  has native bf16 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: AVX512-BF16/AMX),
  without loss scaling (bf16 has fp32's exponent range). Otherwise it logs that it falls
  back to fp32. ``dtype='bfloat16'`` forces bf16 autocast on any CPU (emulated, slow:
  for checking the precision path only).

The KL and reconstruction sums are computed in fp32 under autocast either way
(:mod:`mmintrovae.models.losses` casts their inputs). Gradient accumulation
(``accumulative_counts``) works as for any OptimWrapper.
"""
import logging
from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmagic.registry import OPTIM_WRAPPERS
from torch import nn

__all__ = ['IntroVAEAmpOptimWrapper', 'cpu_supports_bf16']


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@OPTIM_WRAPPERS.register_module()
class IntroVAEAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` on accelerators; bf16 autocast (or an fp32 fallback) on CPU.

    Args:
        dtype (str | torch.dtype | None): 'auto'/None: fp16 on GPUs, bf16 on CPUs that
            support it, else fp32. 'bfloat16' / 'float16': that type (on CPU only
            'bfloat16', forced even without native support).
        loss_scale: As ``AmpOptimWrapper`` (GPUs only; unused on CPU).
        **kwargs: ``OptimWrapper`` arguments (optimizer, accumulative_counts, clip_grad).

    Attributes:
        amp_dtype (torch.dtype): What the forward passes run in (torch.float32 when mixed
            precision fell back).
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = 'auto', **kwargs):
        if dtype == 'auto':
            dtype = None
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace('torch.', '')
        device = get_device()
        if device != 'cpu':
            super().__init__(loss_scale=loss_scale, dtype=dtype, **kwargs)
            self.amp_dtype = self.cast_dtype or (torch.get_autocast_dtype(device) if hasattr(
                torch, 'get_autocast_dtype') else torch.float16)
            self._log(f'Mixed precision on {device}: {self.amp_dtype} autocast with '
                      f'{"dynamic" if loss_scale == "dynamic" else loss_scale} loss scaling.')
            return
        # CPU: no GradScaler (and no ``loss_scaler`` attribute: IntroVAE._update then
        # checks the gradients itself and skips non-finite updates).
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        if dtype not in (None, 'bfloat16'):
            raise ValueError(f'Mixed precision on CPU runs in bfloat16 only, got dtype={dtype!r}')
        if dtype == 'bfloat16' or cpu_supports_bf16():
            self.cast_dtype = self.amp_dtype = torch.bfloat16
            native = cpu_supports_bf16()
            self._log('Mixed precision on cpu: bfloat16 autocast, no loss scaling' +
                      ('.' if native else ' (forced: this CPU has no native bf16, so it is '
                       'emulated and slow).'))
        else:
            self.cast_dtype, self.amp_dtype = None, torch.float32
            self._log('Mixed precision on cpu: this CPU has no native bfloat16 support '
                      '(AVX512-BF16/AMX), falling back to float32 (--amp has no effect; '
                      "dtype='bfloat16' forces emulated bf16).", logging.WARNING)

    @staticmethod
    def _log(msg: str, level: int = logging.INFO) -> None:
        print_log(msg, 'current', level)

    @property
    def _cpu(self) -> bool:
        return not hasattr(self, 'loss_scaler')

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self._cpu:
            return OptimWrapper.backward(self, loss, **kwargs)
        return super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self._cpu:
            return OptimWrapper.step(self, **kwargs)
        return super().step(**kwargs)

    def state_dict(self) -> dict:
        if self._cpu:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self._cpu:
            state_dict = dict(state_dict)
            state_dict.pop('loss_scaler', None)  # a checkpoint from a GPU run
            return OptimWrapper.load_state_dict(self, state_dict)
        return super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        if self._cpu and self.cast_dtype is None:  # the fp32 fallback
            with OptimWrapper.optim_context(self, model):
                yield
        else:
            with super().optim_context(model):
                yield
