"""A hook for tests/test_resume.py: appends each training batch (file names and a
flip-sensitive checksum of the images) to <work_dir>/batches.jsonl, so two runs can
be compared batch by batch. Imported by the test configs through custom_imports."""
import json
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmagic.registry import HOOKS


@HOOKS.register_module()
class ResumeProbeHook(Hook):

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        rows = []
        for sample in data_batch['data_samples']:
            img = sample.gt_img.float()
            ramp = torch.arange(img.shape[-1], dtype=torch.float64)
            rows.append([osp.basename(sample.gt_path),
                         float((img.double() * ramp).sum())])  # changes under a flip
        with open(osp.join(runner.work_dir, 'batches.jsonl'), 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter + 1, batch=rows)) + '\n')
