"""Is a checkpoint file intact? A check that reads it without unpickling anything.

The plugin's own checkpoint writes are atomic (:mod:`.safe_checkpoint`), but files also get
damaged outside it: a copy between file systems cut short, a full disk on another writer,
storage faults. torch.load then fails with a raw "PytorchStreamReader failed reading zip
archive" that names no file. :func:`checkpoint_damage` says what is wrong with a file, or
None when it is intact; auto-resume uses it to fall back to the newest intact checkpoint
(:mod:`.auto_resume`) and the safe loader to turn torch's error into a
:class:`DamagedCheckpointError` that names the file.

How: torch.save (torch >= 1.6) writes a zip archive whose members carry CRC-32 checksums.
The archive must open (its central directory is at the end, so a truncated file fails
here), hold a ``data.pkl``, and every member must read to its end with a matching checksum
(a flipped byte anywhere fails). Cost: one sequential read of the file (about a second per
GB), no unpickling. Legacy (non-zip) checkpoints are checked by loading them with the safe
loader.
"""
import os
import zipfile
from typing import Optional

__all__ = ['DamagedCheckpointError', 'checkpoint_damage']

_ZIP_MAGIC = b'PK\x03\x04'
_CHUNK = 1 << 24


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file is truncated or corrupt. ``path`` names it, ``reason`` says how."""

    def __init__(self, path: str, reason: str, hint: str = ''):
        self.path, self.reason = path, reason
        super().__init__(f'Checkpoint {path} is damaged ({reason}): it cannot be loaded.'
                         + (f' {hint}' if hint else ''))


def _zip_damage(path: str) -> Optional[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not any(i.filename == 'data.pkl' or i.filename.endswith('/data.pkl')
                       for i in infos):
                return 'a zip archive without data.pkl: not a torch.save checkpoint'
            for info in infos:
                try:
                    with zf.open(info) as f:
                        while f.read(_CHUNK):
                            pass
                except zipfile.BadZipFile as e:
                    # torch.serialization.config.save.compute_crc32=False stores CRC 0:
                    # nothing to compare (the member still read to its end).
                    if info.CRC == 0 and 'CRC' in str(e):
                        continue
                    return f'member {info.filename}: {e}'
    except zipfile.BadZipFile as e:
        size = os.path.getsize(path)
        return f'not a readable zip archive ({e}; {size} bytes): truncated or corrupt'
    except (OSError, EOFError, ValueError, NotImplementedError) as e:
        return f'{type(e).__name__}: {e}'
    return None


def checkpoint_damage(path: str) -> Optional[str]:
    """Why the checkpoint file ``path`` cannot be loaded, or None if it is intact.

    Only damage is reported: a file the safe loader refuses for its content
    (:class:`~.safe_checkpoint.UnsafeCheckpointError`) is intact and raises.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return 'the file does not exist'
    if not os.path.isfile(path):
        return 'not a file'
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    if not head:
        return 'empty file (0 bytes)'
    if head == _ZIP_MAGIC:
        return _zip_damage(path)
    # Legacy pickle format (or no checkpoint at all): only a load can tell.
    from .safe_checkpoint import UnsafeCheckpointError, load_checkpoint_safely
    try:
        load_checkpoint_safely(path, _check_damage=False)
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  (anything else: it does not load)
        return f'{type(e).__name__}: {e}'
    return None
