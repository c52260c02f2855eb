"""Runtime fixes for MMEngine. Importing this package patches MMEngine's checkpoint I/O
(safe loading, atomic saving); it imports nothing from mmcv or mmagic."""
from .safe_checkpoint import (UnsafeCheckpointError, atomic_save_checkpoint,
                              load_checkpoint_safely, patch_mmengine)

patch_mmengine()

__all__ = [
    'UnsafeCheckpointError', 'atomic_save_checkpoint', 'load_checkpoint_safely',
    'patch_mmengine'
]
