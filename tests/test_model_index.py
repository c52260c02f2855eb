"""model-index.yml and its metafiles list every recipe, with the recipe's own figures.

mim and OpenMMLab's model zoo read these files; a recipe missing from them cannot be
found with ``mim search``, and a stale batch size or resolution misleads.
"""
import os.path as osp
from glob import glob

import pytest
import yaml
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: MMagic's own GAN trained on the plugin's data: a baseline, not a plugin model
BASELINE_PREFIX = 'dcgan_'


def _metafile_models():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    models = []
    for metafile in index['Import']:
        with open(osp.join(REPO, metafile)) as f:
            meta = yaml.safe_load(f)
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['In Collection'] in collections, (metafile, model['Name'])
            models.append(model)
    return models


def _recipes():
    return sorted(osp.splitext(osp.basename(p))[0] for p in glob(osp.join(REPO, 'configs', '*.py'))
                  if not osp.basename(p).startswith(BASELINE_PREFIX))


def test_every_recipe_is_indexed_once():
    names = [model['Name'] for model in _metafile_models()]
    assert len(names) == len(set(names)), 'a recipe is listed twice'
    assert sorted(names) == _recipes()


@pytest.mark.parametrize('model', _metafile_models(), ids=lambda m: m['Name'])
def test_entry_matches_its_config(model):
    assert model['Config'] == f"configs/{model['Name']}.py"
    cfg = Config.fromfile(osp.join(REPO, model['Config']))
    dataset = cfg.train_dataloader.dataset
    # the metafiles state the total batch: per-process batch times processes
    gpus = model['Metadata'].get('GPUs', 1)
    assert model['Metadata']['Batch Size'] == cfg.train_dataloader.batch_size * gpus
    assert model['Metadata']['Resolution'] == dataset.image_size
