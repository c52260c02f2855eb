"""Safe checkpoint loading and atomic checkpoint saving for MMEngine 0.10.

Loading: MMEngine 0.10.7 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then
defaults to ``weights_only=True`` and refuses MMEngine's own training checkpoints
("Unsupported global: mmengine.logging.history_buffer.HistoryBuffer"). Instead of
``weights_only=False`` (which unpickles arbitrary code) we hand torch.load a restricted
unpickler that resolves only the globals an MMEngine/MMagic training checkpoint holds.

A load that fails because the file is truncated or corrupt (torch's raw "PytorchStreamReader
failed reading zip archive") raises DamagedCheckpointError naming the file
(:mod:`.checkpoint_integrity`).

Saving: MMEngine writes checkpoints (and the ``last_checkpoint`` pointer) in place, so a
process killed mid-write leaves a truncated file. We write to a temporary file in the same
folder and ``os.replace`` it into place.

Only torch, numpy and mmengine are imported here (no mmcv/mmagic), so tests and tools can
use this module on its own. ``patch_mmengine()`` is idempotent; importing
``mmintrovae.engine`` calls it.
"""
import _compat_pickle
import codecs
import importlib
import logging
import os
import os.path as osp
import pickle
import re
import types
import uuid
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_safely', 'load_from_safe_local',
    'atomic_save_checkpoint', 'safe_pickle', 'patch_mmengine', 'TRUST_ENV'
]

TRUST_ENV = 'MMINTROVAE_TRUST_CHECKPOINTS'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references something the safe loader will not unpickle."""

    def __init__(self, global_name, filename=None):
        self.global_name, self.filename = global_name, filename
        where = f'checkpoint {filename!r}' if filename is not None else 'the checkpoint'
        super().__init__(
            f'Refusing to load {where}: its pickle references `{global_name}`, which is not '
            'on the allow-list for MMEngine training checkpoints (unpickling it could run '
            'arbitrary code). If you trust this file, load it deliberately by setting '
            f'{TRUST_ENV}=1 in the environment, or with '
            'load_checkpoint_safely(path, trusted=True); either uses '
            'torch.load(weights_only=False).')


# ---------------------------------------------------------------- restricted unpickler
# HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'min') (protocol 2
# cannot name nested functions). getattr itself must not be allowed: chained getattr calls
# from any allowed object reach os.system. So only these exact (class, name) pairs pass.
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name, *default):
    # Class-level _statistics_methods may be filled by an earlier (even hostile) pickle, so a
    # name must also be a public plain function defined on HistoryBuffer itself.
    if (obj is HistoryBuffer and not default and isinstance(name, str)
            and not name.startswith('_')
            and (name in _DEFAULT_STATISTICS or name in HistoryBuffer._statistics_methods)
            and isinstance(HistoryBuffer.__dict__.get(name), types.FunctionType)):
        return HistoryBuffer.__dict__[name]
    target = (f'{obj.__module__}.{obj.__qualname__}' if isinstance(obj, type) else
              f'<{type(obj).__module__}.{type(obj).__qualname__} object>')
    raise UnsafeCheckpointError(f'builtins.getattr({target}, {name!r})')


def _latin1_encode(obj, encoding='utf-8', errors='strict'):
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); other codecs import
    # modules by name, so only latin-1 is allowed.
    if codecs.lookup(encoding).name != 'iso8859-1' or not isinstance(obj, str):
        raise UnsafeCheckpointError(f'_codecs.encode(..., {encoding!r})')
    return codecs.encode(obj, 'latin1', errors)


def _numpy_globals():
    try:  # numpy 2 moved numpy.core to numpy._core; pickles may name either
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:
        multiarray = importlib.import_module('numpy.core.multiarray')
    table = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
    for prefix in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        table[f'{prefix}._reconstruct'] = multiarray._reconstruct
        table[f'{prefix}.scalar'] = multiarray.scalar
    return table


def _torch_globals():
    u = torch._utils
    table = {
        'torch._utils._rebuild_tensor': u._rebuild_tensor,
        'torch._utils._rebuild_tensor_v2': u._rebuild_tensor_v2,
        'torch._utils._rebuild_tensor_v3': u._rebuild_tensor_v3,
        'torch._utils._rebuild_parameter': u._rebuild_parameter,
        'torch._utils._rebuild_parameter_with_state': u._rebuild_parameter_with_state,
        'torch.Size': torch.Size,
        'torch.device': torch.device,
        # type tag of untyped storages in the zip format (typed ones are FloatStorage etc.)
        'torch.storage.UntypedStorage': torch.storage.UntypedStorage,
    }
    for value in vars(torch).values():  # dtypes pickle as e.g. torch.float32
        if isinstance(value, torch.dtype):
            table[str(value)] = value
    return table


def _allowed_globals():
    table = {
        'collections.OrderedDict': OrderedDict,
        'collections.Counter': Counter,  # MultiStepLR milestones
        'mmengine.logging.history_buffer.HistoryBuffer': HistoryBuffer,
        'builtins.getattr': _history_buffer_getattr,
        '_codecs.encode': _latin1_encode,
    }
    table.update(_numpy_globals())
    table.update(_torch_globals())
    return table


ALLOWED_GLOBALS = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; imports nothing."""

    def find_class(self, module, name):
        # Protocol-2 pickles spell Python 3 names the Python 2 way (__builtin__.getattr).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == 'torch' and name.endswith('Storage') and name != 'UntypedStorage':
            # Legacy typed storages (FloatStorage...): a dtype tag, as torch's zip loader uses.
            try:
                return torch.serialization.StorageType(name)
            except KeyError:
                pass
        try:
            return ALLOWED_GLOBALS[f'{module}.{name}']
        except KeyError:
            raise UnsafeCheckpointError(f'{module}.{name}') from None


def _restricted_load(file, **kwargs):
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) needs .Unpickler, .load (legacy format) and __name__.
safe_pickle = types.ModuleType('mmintrovae_safe_pickle')
safe_pickle.Unpickler = _RestrictedUnpickler
safe_pickle.load = _restricted_load
safe_pickle.UnpicklingError = pickle.UnpicklingError


# ---------------------------------------------------------------- loading
def _trusted_by_env():
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true', 'yes')


def _check_history_buffer_registry(before, filename):
    """HistoryBuffer.__setstate__ merges the pickled statistics methods into a class-level
    dict; undo and refuse anything but HistoryBuffer's own methods under their own names."""
    registry = HistoryBuffer._statistics_methods
    for key, value in list(registry.items()):
        if before.get(key) is value or (isinstance(key, str) and not key.startswith('_')
                                        and HistoryBuffer.__dict__.get(key) is value):
            continue
        registry.clear()
        registry.update(before)
        raise UnsafeCheckpointError(
            f'HistoryBuffer statistics method {key!r} -> {type(value).__qualname__}', filename)


def _is_torchscript_zip(file):
    # torch.load hands TorchScript archives to torch.jit.load, bypassing pickle_module.
    try:
        with zipfile.ZipFile(file) as zf:
            return any(n.endswith('/constants.pkl') or n == 'constants.pkl'
                       for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def load_checkpoint_safely(path, map_location='cpu', trusted=False, _check_damage=True):
    """torch.load an MMEngine checkpoint, unpickling only allow-listed globals.

    With ``trusted=True`` or ``MMINTROVAE_TRUST_CHECKPOINTS=1`` the file is loaded with
    plain ``torch.load(weights_only=False)`` (arbitrary code!) and a warning is logged.
    Raises UnsafeCheckpointError for anything outside the allow-list, and
    DamagedCheckpointError (a RuntimeError naming the file) when the load fails because
    the file is truncated or corrupt (see :mod:`.checkpoint_integrity`).
    """
    path = os.fspath(path)
    try:
        return _load(path, map_location, trusted)
    except UnsafeCheckpointError:
        raise
    except Exception as e:
        if not _check_damage or not os.path.isfile(path):
            raise  # a missing file keeps torch's FileNotFoundError
        from .checkpoint_integrity import DamagedCheckpointError, checkpoint_damage
        reason = checkpoint_damage(path)
        if reason is None:
            raise  # an intact file: the error is not about damage
        raise DamagedCheckpointError(path, reason) from e


def _load(path, map_location, trusted):
    if trusted or _trusted_by_env():
        print_log(f'Loading checkpoint {path} with torch.load(weights_only=False): '
                  'its pickle can run arbitrary code; do this only for files you trust.',
                  logger='current', level=logging.WARNING)
        return torch.load(path, map_location=map_location, weights_only=False)
    if path.endswith('.safetensors'):  # torch.load reads these without pickle
        return torch.load(path, map_location=map_location)
    if _is_torchscript_zip(path):
        raise UnsafeCheckpointError('TorchScript archive (torch.jit.load)', path)
    before = dict(HistoryBuffer._statistics_methods)
    try:
        checkpoint = torch.load(
            path, map_location=map_location, pickle_module=safe_pickle, weights_only=False)
    except BaseException as e:
        # a failed load must not leave pickled methods in HistoryBuffer's class registry
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(before)
        if isinstance(e, UnsafeCheckpointError):
            raise UnsafeCheckpointError(e.global_name, path) from None
        raise
    _check_history_buffer_registry(before, path)
    return checkpoint


def load_from_safe_local(filename, map_location):
    """MMEngine CheckpointLoader scheme for local files (replaces load_from_local)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):  # same error as mmengine's load_from_local
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_safely(filename, map_location=map_location)


# ---------------------------------------------------------------- atomic saving
def _remove_stale_temps(folder, base):
    # A process killed mid-save leaves its temp file behind; the next save of the same file
    # (e.g. after resuming) removes it.
    pattern = re.compile(rf'\.{re.escape(base)}\.(\d+)\.[0-9a-f]{{8}}\.tmp')
    for name in os.listdir(folder):
        match = pattern.fullmatch(name)
        if match and int(match.group(1)) != os.getpid():
            try:
                os.remove(osp.join(folder, name))
            except OSError:
                pass


def _atomic_write(filename, write):
    """Call write(f) on a temp file next to filename, fsync, then os.replace it into place."""
    folder, base = osp.split(osp.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temps(folder, base)
    tmp = osp.join(folder, f'.{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        # os.open with 0o666 keeps the permissions that a plain open() (umask) would give.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _is_local_target(filename, file_client_args, backend_args):
    from mmengine.fileio import get_file_backend
    from mmengine.fileio.backends import LocalBackend
    if file_client_args is not None or str(filename).startswith('pavi://'):
        return False
    return isinstance(get_file_backend(filename, backend_args=backend_args), LocalBackend)


def atomic_save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
    """Drop-in for mmengine.runner.checkpoint.save_checkpoint; atomic for local files,
    other backends (pavi, petrel, file_client_args) go to MMEngine's original."""
    if not _is_local_target(filename, file_client_args, backend_args):
        return _ORIGINAL['save_checkpoint'](
            checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)
    _atomic_write(filename, lambda f: torch.save(checkpoint, f))


def _save_checkpoint_with_step(self, runner, step, meta):
    """CheckpointHook._save_checkpoint_with_step of MMEngine 0.10, reordered so that a crash
    never loses the last good checkpoint: save, then point last_checkpoint at it (atomic
    write), then delete the outdated one. Upstream deletes first, which with
    max_keep_ckpts=1 leaves nothing to resume from if the save dies; and it rewrites
    last_checkpoint in place, which a kill can leave empty."""
    from mmengine.dist import is_main_process
    outdated = None
    if self.max_keep_ckpts > 0:
        if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            # updated before saving so the checkpoint records the kept ids, as upstream
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)

    runner.save_checkpoint(
        self.out_dir, ckpt_filename, self.file_client_args,
        save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
        meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)

    if not is_main_process():
        return
    last = self.last_ckpt
    _atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                  lambda f: f.write(str(last).encode('utf-8')))
    path = None if outdated is None else self.file_backend.join_path(
        self.out_dir, self.filename_tmpl.format(outdated))
    if path is not None and path != last:  # a step-less filename_tmpl names the new file
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
            self.file_backend.rmtree(path)


# ---------------------------------------------------------------- patching MMEngine
_ORIGINAL = {}


def patch_mmengine():
    """Route MMEngine's local checkpoint loading through the safe loader and make its
    checkpoint saving atomic. Safe to call more than once."""
    import sys

    import mmengine
    import mmengine.runner.checkpoint as ckpt_mod
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import CheckpointLoader

    # '' is the fallback scheme for plain paths: runner.resume, load_from, load_checkpoint
    # and _load_checkpoint all reach it through CheckpointLoader.
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_safe_local, force=True)

    original = ckpt_mod.save_checkpoint
    if original is not atomic_save_checkpoint:
        _ORIGINAL['save_checkpoint'] = original
        # Runner and the strategies import save_checkpoint by name: patch every copy.
        for mod_name, mod in list(sys.modules.items()):
            if (mod is not None and mod_name.split('.')[0] in ('mmengine', 'mmagic', 'mmintrovae')
                    and getattr(mod, 'save_checkpoint', None) is original):
                mod.save_checkpoint = atomic_save_checkpoint

    if mmengine.__version__.startswith('0.10.'):  # the method copied above is 0.10's
        if CheckpointHook._save_checkpoint_with_step is not _save_checkpoint_with_step:
            _ORIGINAL['_save_checkpoint_with_step'] = CheckpointHook._save_checkpoint_with_step
            CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step
    else:
        print_log(f'mmintrovae: CheckpointHook of MMEngine {mmengine.__version__} left '
                  'unpatched (last_checkpoint is not written atomically).',
                  logger='current', level=logging.WARNING)
