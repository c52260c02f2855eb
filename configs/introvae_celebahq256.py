# IntroVAE on CelebA-HQ 256x256, the official 256 script's settings:
# channels 32..512, batch 16, m = 120, beta (weight_rec) = 0.05,
# alpha = 0.5 * weight_neg = 0.25, no VAE warm-up, and the official networks'
# layout: shortcut='official' gives the 512 -> 512 residual block between the two
# 512 entries a 1x1 projection, as the official code does by accident (networks.py
# tests `inc is not outc` on ints that main.py parses with int(); CPython shares
# int objects only up to 256). 22,973,600 encoder + 16,452,963 generator parameters.
# Images: data/celebahq/train (29,000) and data/celebahq/test (1,000).
_base_ = [
    '_base_/models/introvae.py',
    '_base_/datasets/image_folder.py',
    '_base_/default_runtime.py',
    '_base_/evaluation.py',
]

model = dict(architecture=dict(shortcut='official'))

train_cfg = dict(max_iters=200000)
