"""Runtime fixes for MMEngine. Importing this package patches MMEngine's checkpoint I/O
(safe loading, atomic saving); it imports nothing from mmcv or mmagic."""
from .checkpoint_integrity import DamagedCheckpointError, checkpoint_damage
from .safe_checkpoint import (UnsafeCheckpointError, atomic_save_checkpoint,
                              load_checkpoint_safely, patch_mmengine)

patch_mmengine()

__all__ = [
    'UnsafeCheckpointError', 'DamagedCheckpointError', 'atomic_save_checkpoint',
    'checkpoint_damage', 'load_checkpoint_safely', 'patch_mmengine'
]
