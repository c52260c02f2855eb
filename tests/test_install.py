"""The project's environment: MMagic imports, compiled mmcv ops, registration through configs."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_mmagic_submodules_import():
    import mmagic.datasets  # noqa: F401
    import mmagic.engine  # noqa: F401
    import mmagic.evaluation  # noqa: F401
    import mmagic.models  # noqa: F401
    import mmagic.visualization  # noqa: F401


def test_mmcv_has_compiled_ops():
    import torch
    from mmcv.ops import nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)  # runs mmcv._ext's C++ kernel
    assert keep.tolist() == [0, 2]


def test_config_with_custom_imports_builds_plugin_modules(tmp_path):
    """A config naming only custom_imports + default_scope finds mmintrovae's registrations,
    in a fresh interpreter where nothing imported mmintrovae beforehand."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        "default_scope = 'mmagic'\n"
        "custom_imports = dict(imports=['mmintrovae'], allow_failed_imports=False)\n"
        "model = dict(type='IntroVAE', architecture=dict(image_size=32, channels=(8, 8, 8),"
        " latent_dim=4), encoder=dict(type='IntroVAEEncoder'),"
        " generator=dict(type='IntroVAEGenerator'), data_preprocessor=dict(type='DataPreprocessor'))\n")
    code = (
        'import sys\n'
        'from mmengine.config import Config\n'
        'from mmengine.registry import init_default_scope\n'
        f'cfg = Config.fromfile({str(cfg)!r})\n'
        "assert 'mmintrovae' in sys.modules\n"
        'init_default_scope(cfg.default_scope)\n'
        'from mmagic.registry import MODELS\n'
        'model = MODELS.build(cfg.model)\n'
        'print(type(model).__name__, type(model.encoder).__name__, type(model.generator).__name__)\n')
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ['IntroVAE', 'IntroVAEEncoder', 'IntroVAEGenerator']


@pytest.mark.slow
def test_setup_failure_names_the_step_and_marks_nothing_ready(tmp_path):
    venv = tmp_path / 'venv'
    env = dict(os.environ, MMINTROVAE_VENV=str(venv), PIP_NO_INDEX='1',
               PIP_FIND_LINKS=str(tmp_path))  # no package source: the torch step must fail
    out = subprocess.run(['bash', osp.join(REPO, 'tools/setup_env.sh')], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert 'FAILED at step 2/7: torch and torchvision' in out.stderr
    assert 'bash tools/setup_env.sh' in out.stderr  # how to retry
    assert not (venv / '.mmintrovae-ready').exists()
