"""Distributed training through MMEngine on GPUs (NCCL) and on CPU-only machines (gloo).

MMEngine 0.10.7 drives PyTorch DDP but fails on a machine without GPUs in two places:

* ``init_dist`` (called by ``Runner.setup_env``) always calls ``torch.cuda.set_device``;
* ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to every DDP wrapper, and
  ``MMSeparateDistributedDataParallel`` hands it to each inner DDP, which refuses
  ``device_ids`` for CPU modules.

Nothing is monkeypatched. The recipes select two registered classes
(``configs/_base_/default_runtime.py``) whose CPU fixes apply only when no accelerator
is present (``mmengine.device.get_device() == 'cpu'``):

* :class:`IntroVAERunner` (``runner_type``): on CPU it creates the gloo process group
  itself before ``Runner.setup_env`` runs (which then skips ``init_dist``). With GPUs it
  is MMEngine's Runner.
* :class:`IntroVAEDistributedDataParallel` (``model_wrapper_cfg``): MMEngine's
  ``MMSeparateDistributedDataParallel`` (the encoder and the generator each in their own
  DDP), without ``device_ids`` on CPU. On every device it also saves checkpoints without
  DDP's ``module.`` level (MMEngine 0.10.7 writes ``encoder.module.*`` keys that neither
  a 1-process model nor ``--resume`` loads) and refuses ``static_graph=True``.

SyncBN: MMEngine's switch ``sync_bn='torch'`` (``--cfg-options sync_bn=torch``) converts
every BatchNorm to ``torch.nn.SyncBatchNorm``, which raises on CPU tensors ("SyncBatchNorm
expected input tensor to be on GPU ...", and DDP refuses a CPU module containing one). On
CPU the wrapper turns those layers into :class:`CPUSyncBatchNorm`, which computes the same
statistics with differentiable all-reduces (gloo). On GPUs torch's own kernels are kept.
"""
import logging
import os
import subprocess
from datetime import timedelta

import torch
import torch.distributed as dist
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.logging import print_log
from mmengine.model import MMSeparateDistributedDataParallel
from mmengine.runner import Runner
from mmagic.registry import MODEL_WRAPPERS, RUNNERS
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['IntroVAERunner', 'IntroVAEDistributedDataParallel', 'CPUSyncBatchNorm',
           'init_cpu_process_group', 'convert_cpu_sync_batchnorm']


def _on_cpu() -> bool:
    return get_device() == 'cpu'


# ------------------------------------------------------------------- process group
def _slurm_env() -> None:
    """RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* from Slurm's variables, as MMEngine does."""
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1')


def _mpi_env() -> None:
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')


def init_cpu_process_group(launcher: str, dist_cfg: dict) -> None:
    """Create the default process group with gloo, without touching CUDA.

    What ``mmengine.dist.init_dist`` does for the 'pytorch', 'slurm' and 'mpi' launchers,
    minus ``torch.cuda.set_device``. NCCL needs GPUs, so a config's ``backend='nccl'``
    becomes gloo here (logged). ``timeout`` is in seconds, as in MMEngine.
    """
    kwargs = dict(dist_cfg)
    backend = kwargs.pop('backend', 'gloo')
    kwargs.pop('init_backend', None)
    if backend != 'gloo':
        print_log(f'No GPU on this machine: the {backend!r} backend of env_cfg.dist_cfg '
                  'cannot run here, using gloo for distributed training on CPU.', 'current',
                  logging.WARNING)
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = timedelta(seconds=kwargs['timeout'])
    if launcher == 'slurm':
        _slurm_env()
    elif launcher == 'mpi':
        _mpi_env()
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']), **kwargs)


@RUNNERS.register_module()
class IntroVAERunner(Runner):
    """MMEngine's Runner; on a machine without GPUs it starts distributed runs with gloo.

    Select it with ``runner_type = 'mmagic.IntroVAERunner'`` (the recipes do) and build
    with ``RUNNERS.build(cfg)`` (tools/train.py and tools/test.py do).
    """

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not is_distributed() and _on_cpu():
            init_cpu_process_group(self.launcher, env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)


# ------------------------------------------------------------------------ SyncBN
class CPUSyncBatchNorm(_BatchNorm):
    """A BatchNorm whose training-mode statistics span all ranks, for CPU tensors (gloo).

    torch's SyncBatchNorm kernels exist for GPUs only (and DDP refuses a CPU module that
    contains any ``torch.nn.SyncBatchNorm``). In training mode with more than one
    process, the batch mean and (biased) variance here are computed over the union of
    all ranks' batches with two all-reduces from ``torch.distributed.nn.functional``
    (which all-reduce the gradients in backward), so outputs, gradients and running
    statistics are those of one BatchNorm over the whole global batch. Statistics in
    fp32, output in the input's dtype. In eval mode, or with one process, it is a plain
    BatchNorm. Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {input.dim()}D input)')

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        group = self.process_group or dist.group.WORLD
        if dist.get_world_size(group) == 1:
            return super().forward(input)
        self._check_input_dim(input)
        from torch.distributed.nn.functional import all_reduce

        x = input.float()
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        total = all_reduce(torch.cat([x.sum(dims), count]), group=group)
        n = total[-1].detach()
        mean = total[:-1] / n
        centred = x - mean.view(shape)
        var = all_reduce(centred.pow(2).sum(dims), group=group) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)

        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / self.num_batches_tracked.item() if self.momentum is None
                          else self.momentum)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out.to(input.dtype)


def convert_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``torch.nn.SyncBatchNorm`` in ``module`` by a
    :class:`CPUSyncBatchNorm` sharing its parameters and buffers (what
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` does the other way round)."""
    if isinstance(module, nn.SyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum,
                               module.affine, module.track_running_stats,
                               module.process_group)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_cpu_sync_batchnorm(child))
    return module


# ------------------------------------------------------------------ model wrapper
@MODEL_WRAPPERS.register_module()
class IntroVAEDistributedDataParallel(MMSeparateDistributedDataParallel):
    """MMEngine's ``MMSeparateDistributedDataParallel`` (encoder and generator in separate
    DDPs, so each optimizer step all-reduces its own network's gradients), usable on CPU.

    On CPU: ``device_ids``/``output_device`` (which ``Runner.wrap_model`` always passes)
    are dropped, and torch SyncBatchNorm layers (``sync_bn='torch'``) become
    :class:`CPUSyncBatchNorm`. On every device: state dicts without DDP's ``module.``
    level (plain checkpoint keys), and ``static_graph=True`` is refused.
    """

    def __init__(self, module: nn.Module, broadcast_buffers: bool = False,
                 find_unused_parameters: bool = False, **kwargs):
        if kwargs.get('static_graph'):
            # IntroVAE's generator runs forward in the encoder step, whose backward
            # (inputs=encoder parameters) never reaches it; a static-graph DDP then
            # finishes its delayed all-reduce there, before the generator step has
            # computed any gradient, and the ranks drift apart (seen with gloo).
            raise ValueError('model_wrapper_cfg.static_graph=True is not supported by '
                             "IntroVAE's two-step update: the ranks' weights diverge.")
        if _on_cpu():
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
            n = sum(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
            if n:
                module = convert_cpu_sync_batchnorm(module)
                print_log(f'sync_bn on CPU: torch.nn.SyncBatchNorm supports GPU tensors '
                          f'only; {n} layers synchronise through gloo all-reduces instead '
                          '(mmintrovae CPUSyncBatchNorm).', 'current')
        super().__init__(module, broadcast_buffers=broadcast_buffers,
                         find_unused_parameters=find_unused_parameters, **kwargs)
        for child in module.children():
            if isinstance(child, DistributedDataParallel):
                child.register_state_dict_post_hook(_drop_ddp_level)
                child.register_load_state_dict_pre_hook(_add_ddp_level)


def _drop_ddp_level(ddp: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """State-dict keys of a DDP-wrapped submodule without DDP's ``module.`` level.

    ``Runner.save_checkpoint`` saves ``runner.model.module.state_dict()``: the IntroVAE
    whose ``encoder`` and ``generator`` are DDPs, so MMEngine 0.10.7 would write
    ``encoder.module.*`` keys, which neither a 1-process model nor MMEngine's own loader
    (it unwraps DDPs, ``--resume``) accepts. With this hook a checkpoint of a distributed
    run has the same keys as one of a 1-process run.
    """
    inner = prefix + 'module.'
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        for key in [k for k in metadata if k == inner[:-1] or k.startswith(inner)]:
            value = metadata.pop(key)
            metadata.setdefault(prefix + key[len(inner):] if key != inner[:-1]
                                else prefix[:-1], value)


def _add_ddp_level(ddp: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """The reverse for ``load_state_dict`` on the wrapped model (torch's loader; MMEngine's
    unwraps DDPs itself)."""
    inner = prefix + 'module.'
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)
