# IntroVAE on CelebA-HQ 256x256, the official 256 script's settings:
# channels 32..512, batch 16, m = 120, beta (weight_rec) = 0.05,
# alpha = 0.5 * weight_neg = 0.25, no VAE warm-up.
# Images: data/celebahq/train (29,000) and data/celebahq/test (1,000).
_base_ = [
    '_base_/models/introvae.py',
    '_base_/datasets/image_folder.py',
    '_base_/default_runtime.py',
    '_base_/evaluation.py',
]

train_cfg = dict(max_iters=200000)
