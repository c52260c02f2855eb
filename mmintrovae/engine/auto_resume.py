"""``--resume`` without a path: which checkpoint, when the newest one is damaged.

MMEngine's auto-resume takes the file named in ``<work_dir>/last_checkpoint`` and dies with
torch's raw zip error when that file is truncated or corrupt. Here the choice is:

* the file ``last_checkpoint`` names, when it is intact (MMEngine's rule; nothing changes);
* otherwise (damaged, missing, or no/empty ``last_checkpoint``) the newest intact checkpoint
  of the same folder: the highest step among the files named like the CheckpointHook's
  ``filename_tmpl`` (``iter_{}.pth``, ``epoch_{}.pth``; best-metric files hold no optimizer
  and are not candidates), up to the step of the file ``last_checkpoint`` names (a newer
  file is a leftover of an earlier run in the same work dir). A warning names every
  damaged file and the one chosen.

Nothing saved is lost: a damaged file is kept, renamed ``<name>.damaged`` (the resumed run
would otherwise write a new ``iter_N.pth`` over it, and the CheckpointHook's
``max_keep_ckpts`` rotation only removes names of its template), and ``last_checkpoint``
is pointed at the chosen file (atomically), so MMEngine resumes from it and a second
``--resume`` finds the same file. In distributed runs the main process decides and
renames, and the other processes take its answer.

Intact means: :func:`~.checkpoint_integrity.checkpoint_damage` finds nothing (the zip
archive and every member's checksum read back).
"""
import logging
import os
import os.path as osp
import re
from typing import Iterable, List, NamedTuple, Optional, Tuple

from mmengine.logging import print_log

from .checkpoint_integrity import checkpoint_damage

__all__ = ['ResumeChoice', 'NoIntactCheckpointError', 'choose_resume_checkpoint',
           'newest_intact_checkpoint', 'prepare_auto_resume', 'checkpoint_templates']

DEFAULT_TEMPLATES = ('iter_{}.pth', 'epoch_{}.pth')


class NoIntactCheckpointError(FileNotFoundError):
    """--resume without a path in a work dir whose checkpoints are all damaged or gone."""


class ResumeChoice(NamedTuple):
    """``path``: the checkpoint to resume from (None: nothing to resume, train from scratch);
    ``damaged``: (file, reason) of every damaged checkpoint found on the way;
    ``pointer``: what ``last_checkpoint`` named (None: no such file or empty)."""
    path: Optional[str]
    damaged: List[Tuple[str, str]]
    pointer: Optional[str]

    @property
    def falls_back(self) -> bool:
        return self.path is not None and self.path != self.pointer


def checkpoint_templates(cfg) -> Tuple[str, ...]:
    """The CheckpointHook's filename_tmpl of a config, else both MMEngine defaults."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    tmpl = hook.get('filename_tmpl') if isinstance(hook, dict) else None
    return (tmpl, ) if tmpl else DEFAULT_TEMPLATES


def _step_of(name: str, templates: Iterable[str]) -> Optional[int]:
    """The step in a file name made by one of the templates ('iter_500.pth' -> 500)."""
    for tmpl in templates:
        head, sep, tail = tmpl.partition('{}')
        if sep:
            match = re.fullmatch(re.escape(head) + r'(\d+)' + re.escape(tail), name)
            if match:
                return int(match.group(1))
    return None


def _numbered_checkpoints(folder: str, templates: Iterable[str]) -> List[Tuple[int, str]]:
    """(step, path) of the files of ``folder`` named by a template, newest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        step = _step_of(name, templates)
        if step is not None and osp.isfile(osp.join(folder, name)):
            found.append((step, osp.join(folder, name)))
    return sorted(found, reverse=True)


def newest_intact_checkpoint(folder: str, templates: Iterable[str] = DEFAULT_TEMPLATES,
                             exclude: Iterable[str] = (), max_step: Optional[int] = None
                             ) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The newest intact numbered checkpoint of ``folder`` (up to ``max_step``), or None,
    and the damaged ones newer than it, (path, reason). Checks files newest first and stops
    at the first intact one, so a folder of many checkpoints costs one or two reads."""
    skip = {osp.abspath(p) for p in exclude}
    damaged = []
    for step, path in _numbered_checkpoints(folder, templates):
        if osp.abspath(path) in skip or (max_step is not None and step > max_step):
            continue
        reason = checkpoint_damage(path)
        if reason is None:
            return path, damaged
        damaged.append((path, reason))
    return None, damaged


def _read_pointer(work_dir: str) -> Optional[str]:
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None


def choose_resume_checkpoint(work_dir: str, templates: Iterable[str] = DEFAULT_TEMPLATES
                             ) -> ResumeChoice:
    """What to resume from in ``work_dir`` (see the module docstring). Reads, writes nothing.

    Raises NoIntactCheckpointError (a FileNotFoundError) naming the files when
    checkpoints exist (or last_checkpoint names one) but none is intact.
    """
    templates = tuple(templates)
    pointer = _read_pointer(work_dir)
    damaged = []
    if pointer is not None:
        if '://' in pointer:  # another storage backend: MMEngine's loader decides
            return ResumeChoice(pointer, [], pointer)
        reason = checkpoint_damage(pointer)
        if reason is None:
            return ResumeChoice(pointer, [], pointer)
        if osp.exists(pointer):
            damaged.append((pointer, reason))
    folders = [osp.dirname(pointer)] if pointer is not None else []
    folders += [work_dir]
    # Not newer than the file last_checkpoint names: a newer one is left from an earlier
    # run in this work dir. (Same step allowed: a work dir moved from elsewhere holds the
    # file the stale absolute path names.)
    max_step = None if pointer is None else _step_of(osp.basename(pointer), templates)
    path = None
    seen = {p for p, _ in damaged}
    for folder in dict.fromkeys(osp.abspath(f) for f in folders if f):
        path, more = newest_intact_checkpoint(folder, templates, exclude=seen,
                                              max_step=max_step)
        damaged += more
        seen.update(p for p, _ in more)
        if path is not None:
            break
    if path is None and (pointer is not None or damaged):
        lines = [f'  {p}: {r}' for p, r in damaged]
        if pointer is not None and not osp.exists(pointer):
            lines.insert(0, f'  {pointer} (named by {osp.join(work_dir, "last_checkpoint")}):'
                         ' the file does not exist')
        raise NoIntactCheckpointError(
            f'--resume: no intact checkpoint to resume from in {work_dir}:\n'
            + '\n'.join(lines) + '\nTo train from scratch instead, run without --resume.')
    return ResumeChoice(path, damaged, pointer)


def _keep_aside(path: str) -> str:
    """Rename a damaged checkpoint to <name>.damaged (or .damaged.1, ...); never overwrites."""
    target, n = f'{path}.damaged', 0
    while osp.exists(target):
        n += 1
        target = f'{path}.damaged.{n}'
    os.rename(path, target)
    return target


def _apply(choice: ResumeChoice, work_dir: str) -> None:
    from .safe_checkpoint import _atomic_write
    for path, reason in choice.damaged:
        kept = _keep_aside(path)
        print_log(f'Auto-resume: checkpoint {path} is damaged ({reason}). It is kept as '
                  f'{kept}, so that the resumed run does not write over it.',
                  logger='current', level=logging.WARNING)
    if choice.falls_back:
        if choice.pointer is None:
            why = 'the work dir has no last_checkpoint (or an empty one)'
        elif any(p == choice.pointer for p, _ in choice.damaged):
            why = f'the newest checkpoint {choice.pointer} is damaged'
        else:
            why = f'{choice.pointer}, named by last_checkpoint, does not exist'
        print_log(f'Auto-resume: {why}; resuming from the newest intact checkpoint '
                  f'{choice.path} instead (last_checkpoint now names it).',
                  logger='current', level=logging.WARNING)
        path = choice.path
        _atomic_write(osp.join(work_dir, 'last_checkpoint'),
                      lambda f: f.write(str(path).encode('utf-8')))


def prepare_auto_resume(work_dir: str, templates: Iterable[str] = DEFAULT_TEMPLATES
                        ) -> Optional[str]:
    """Make ``last_checkpoint`` name an intact checkpoint before MMEngine's auto-resume
    reads it; returns the checkpoint MMEngine will resume from (None: none, train from
    scratch). Call after the process group exists (the main process decides)."""
    from mmengine.dist import broadcast_object_list, get_world_size, is_main_process
    answer = [None]
    if is_main_process():
        try:
            choice = choose_resume_checkpoint(work_dir, templates)
            _apply(choice, work_dir)
            answer = [('ok', choice.path)]
        except Exception as e:  # noqa: BLE001  (re-raised below, on every process)
            answer = [('error', e)]
    if get_world_size() > 1:
        broadcast_object_list(answer)
    status, value = answer[0]
    if status == 'error':
        raise value
    return value
