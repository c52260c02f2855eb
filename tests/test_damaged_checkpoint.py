"""A damaged newest checkpoint: detection, auto-resume from the newest intact one,
explicit --resume refused with a message naming the file.

Fast tests check the integrity check, the choice and the renaming on small torch.save
files; the slow test runs tools/train.py (the shrunk recipe of tests/test_resume.py),
cuts its newest checkpoint in half and resumes.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from _images import write_image_folder

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def save(path, step=1):
    torch.save(dict(meta=dict(iter=step), state_dict=dict(w=torch.full((4096, ), float(step)))),
               str(path))
    return str(path)


def cut_in_half(path):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return data


def work_dir_with(tmp_path, steps=(250, 500, 1000), pointer=1000):
    work = tmp_path / 'work'
    work.mkdir()
    for step in steps:
        save(work / f'iter_{step}.pth', step)
    if pointer is not None:
        (work / 'last_checkpoint').write_text(str(work / f'iter_{pointer}.pth'))
    return work


# ------------------------------------------------------------------ integrity check
def test_intact_checkpoint_passes(tmp_path):
    from mmintrovae.engine.checkpoint_integrity import checkpoint_damage
    assert checkpoint_damage(save(tmp_path / 'a.pth')) is None
    legacy = tmp_path / 'legacy.pth'
    torch.save(dict(w=torch.ones(3)), str(legacy), _use_new_zipfile_serialization=False)
    assert checkpoint_damage(str(legacy)) is None


def test_truncated_flipped_empty_and_missing_files_are_damaged(tmp_path):
    from mmintrovae.engine.checkpoint_integrity import checkpoint_damage
    cut = save(tmp_path / 'cut.pth')
    cut_in_half(cut)
    assert 'truncated or corrupt' in checkpoint_damage(cut)

    flipped = save(tmp_path / 'flipped.pth')
    data = bytearray(open(flipped, 'rb').read())
    data[len(data) // 2] ^= 0xFF  # one byte inside the tensor data; the zip still opens
    open(flipped, 'wb').write(bytes(data))
    assert 'CRC' in checkpoint_damage(flipped)

    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert checkpoint_damage(str(empty)) == 'empty file (0 bytes)'
    assert checkpoint_damage(str(tmp_path / 'missing.pth')) == 'the file does not exist'

    legacy = tmp_path / 'legacy.pth'
    torch.save(dict(w=torch.ones(1000)), str(legacy), _use_new_zipfile_serialization=False)
    cut_in_half(legacy)
    assert checkpoint_damage(str(legacy)) is not None


def test_unsafe_checkpoint_is_not_reported_as_damage(tmp_path):
    from mmintrovae.engine.checkpoint_integrity import checkpoint_damage
    from mmintrovae.engine.safe_checkpoint import UnsafeCheckpointError
    legacy = tmp_path / 'evil.pth'
    torch.save(dict(x=SimpleNamespace(a=1)), str(legacy), _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError):
        checkpoint_damage(str(legacy))


def test_safe_loader_names_a_damaged_file(tmp_path):
    from mmintrovae.engine import DamagedCheckpointError, load_checkpoint_safely
    path = save(tmp_path / 'iter_1000.pth')
    cut_in_half(path)
    with pytest.raises(DamagedCheckpointError) as info:
        load_checkpoint_safely(path)
    assert path in str(info.value) and 'PytorchStreamReader' not in str(info.value)
    assert isinstance(info.value, RuntimeError)  # what torch.load raised before
    # MMEngine's loaders reach the safe loader (patched scheme): same error
    from mmengine.runner import CheckpointLoader
    with pytest.raises(DamagedCheckpointError, match='iter_1000.pth is damaged'):
        CheckpointLoader.load_checkpoint(path)
    with pytest.raises(FileNotFoundError):  # missing is not damaged
        load_checkpoint_safely(str(tmp_path / 'missing.pth'))


# ------------------------------------------------------------------ choosing
def test_damaged_newest_falls_back_to_newest_intact(tmp_path):
    from mmintrovae.engine.auto_resume import choose_resume_checkpoint
    work = work_dir_with(tmp_path)
    save(work / 'best_FID_fid_iter_2000.pth', 2000)  # no optimizer: never a candidate
    cut_in_half(work / 'iter_1000.pth')
    choice = choose_resume_checkpoint(str(work))
    assert choice.path == str(work / 'iter_500.pth')
    assert [p for p, _ in choice.damaged] == [str(work / 'iter_1000.pth')]
    assert choice.pointer == str(work / 'iter_1000.pth') and choice.falls_back


def test_intact_pointer_is_kept_and_nothing_else_read(tmp_path, monkeypatch):
    from mmintrovae.engine import auto_resume
    work = work_dir_with(tmp_path, pointer=500)  # iter_1000 newer, pointer wins (MMEngine)
    checked = []
    real = auto_resume.checkpoint_damage
    monkeypatch.setattr(auto_resume, 'checkpoint_damage', lambda p: checked.append(p) or real(p))
    choice = auto_resume.choose_resume_checkpoint(str(work))
    assert choice == (str(work / 'iter_500.pth'), [], str(work / 'iter_500.pth'))
    assert not choice.falls_back and checked == [str(work / 'iter_500.pth')]


def test_missing_or_stale_pointer_and_several_damaged(tmp_path):
    from mmintrovae.engine.auto_resume import choose_resume_checkpoint
    work = work_dir_with(tmp_path, pointer=None)
    assert choose_resume_checkpoint(str(work)).path == str(work / 'iter_1000.pth')
    # a work dir copied from elsewhere: last_checkpoint names a path that does not exist
    (work / 'last_checkpoint').write_text('/elsewhere/work/iter_1000.pth')
    choice = choose_resume_checkpoint(str(work))
    assert choice.path == str(work / 'iter_1000.pth') and choice.damaged == []
    # the two newest damaged: both named, the third chosen
    (work / 'last_checkpoint').write_text(str(work / 'iter_1000.pth'))
    cut_in_half(work / 'iter_1000.pth')
    (work / 'iter_500.pth').write_bytes(b'')
    choice = choose_resume_checkpoint(str(work))
    assert choice.path == str(work / 'iter_250.pth')
    assert [osp.basename(p) for p, _ in choice.damaged] == ['iter_1000.pth', 'iter_500.pth']
    # a newer file than the one last_checkpoint names is a leftover of an earlier run
    save(work / 'iter_5000.pth', 5000)
    assert choose_resume_checkpoint(str(work)).path == str(work / 'iter_250.pth')


def test_no_intact_checkpoint_is_an_error_naming_the_files(tmp_path):
    from mmintrovae.engine.auto_resume import NoIntactCheckpointError, choose_resume_checkpoint
    work = work_dir_with(tmp_path, steps=(500, 1000))
    cut_in_half(work / 'iter_1000.pth')
    cut_in_half(work / 'iter_500.pth')
    with pytest.raises(NoIntactCheckpointError) as info:
        choose_resume_checkpoint(str(work))
    assert 'iter_1000.pth' in str(info.value) and 'iter_500.pth' in str(info.value)
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert choose_resume_checkpoint(str(empty)).path is None  # nothing saved: from scratch


def test_prepare_keeps_the_damaged_file_and_repoints(tmp_path, monkeypatch):
    from mmintrovae.engine import auto_resume
    from mmintrovae.engine.auto_resume import prepare_auto_resume
    logged = []
    monkeypatch.setattr(auto_resume, 'print_log', lambda msg, **kw: logged.append(msg))
    work = work_dir_with(tmp_path)
    cut_in_half(work / 'iter_1000.pth')
    damaged_bytes = (work / 'iter_1000.pth').read_bytes()
    (work / 'iter_1000.pth.damaged').write_bytes(b'an earlier one')  # never overwritten
    assert prepare_auto_resume(str(work)) == str(work / 'iter_500.pth')
    log = '\n'.join(logged)
    assert f'checkpoint {work / "iter_1000.pth"} is damaged' in log
    assert f'resuming from the newest intact checkpoint {work / "iter_500.pth"}' in log
    assert not (work / 'iter_1000.pth').exists()  # a resumed run may write it again
    assert (work / 'iter_1000.pth.damaged.1').read_bytes() == damaged_bytes
    assert (work / 'iter_1000.pth.damaged').read_bytes() == b'an earlier one'
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_500.pth')
    # and again: nothing left to do
    logged.clear()
    assert prepare_auto_resume(str(work)) == str(work / 'iter_500.pth')
    assert logged == []


def test_checkpoint_templates_follow_the_hook():
    from mmengine.config import Config

    from mmintrovae.engine.auto_resume import checkpoint_templates
    assert checkpoint_templates(Config(dict())) == ('iter_{}.pth', 'epoch_{}.pth')
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(filename_tmpl='ckpt_{}.pth'))))
    assert checkpoint_templates(cfg) == ('ckpt_{}.pth', )


def test_explicit_resume_of_a_damaged_file_stops_naming_it(tmp_path):
    from mmengine.config import Config

    from mmintrovae.engine.config import apply_train_args
    work = work_dir_with(tmp_path)
    cut_in_half(work / 'iter_1000.pth')

    def args(resume):
        return SimpleNamespace(launcher='none', work_dir=str(work), config='x.py',
                               resume=resume, amp=False)

    with pytest.raises(SystemExit) as info:
        apply_train_args(Config(dict()), args(str(work / 'iter_1000.pth')))
    message = str(info.value)
    assert f'{work / "iter_1000.pth"} is damaged' in message
    assert f'--resume {work / "iter_500.pth"}' in message
    assert 'PytorchStreamReader' not in message
    assert (work / 'iter_1000.pth').exists()  # an explicit path is never renamed
    cfg = apply_train_args(Config(dict()), args(str(work / 'iter_500.pth')))
    assert cfg.resume and cfg.load_from == str(work / 'iter_500.pth')


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_train_resumes_past_a_truncated_newest_checkpoint(tmp_path):
    from test_resume import differences, env_with, train, train_cmd, write_config
    data = write_image_folder(tmp_path / 'images', 10, 32, mode='L')
    cfg = write_config(tmp_path, data)
    work = tmp_path / 'work'
    train(cfg, work, 'train_cfg.max_iters=4')
    newest = work / 'iter_4.pth'
    shutil.copy(newest, tmp_path / 'iter_4.intact.pth')
    damaged_bytes = cut_in_half(newest)[:os.path.getsize(newest)]

    # an explicit path to it: a clear error naming it, nothing changed
    result = subprocess.run(train_cmd(cfg, work, resume=False) + ['--resume', str(newest)],
                            cwd=REPO, env=env_with(), capture_output=True, text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f'{newest} is damaged' in out and f'--resume {work / "iter_3.pth"}' in out
    assert 'PytorchStreamReader' not in out and 'Traceback' not in out

    # auto mode: warns, keeps it, resumes from iter_3 and recomputes iteration 4 exactly
    log = train(cfg, work, 'train_cfg.max_iters=4', resume=True)
    assert f'checkpoint {newest} is damaged' in log
    assert f'Auto resumed from the latest checkpoint {work / "iter_3.pth"}' in log
    assert 'resumed epoch: 0, iter: 3' in log
    assert (work / 'iter_4.pth.damaged').read_bytes() == damaged_bytes
    assert differences(tmp_path / 'iter_4.intact.pth', newest) == {
        'state_dict': [], 'optimizer': []}
    assert (work / 'last_checkpoint').read_text() == str(newest)
