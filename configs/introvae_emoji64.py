# IntroVAE on Noto colour emoji faces at 64x64: the embedded default, small
# enough to train on a laptop CPU in minutes. Data: python tools/prepare_data.py emoji
# (Debian package fonts-noto-color-emoji) -> data/emoji/{train,test}.
_base_ = ['_base_/cpu_recipe.py']

image_size = 64
model = dict(
    architecture=dict(image_size=image_size, channels=(16, 32, 64, 128), latent_dim=128),
    m=200.0,
    alpha=0.25,
    beta=0.5,
    vae_warmup_iters=200)

_data = dict(image_size=image_size, hint='run: python tools/prepare_data.py emoji')
train_dataloader = dict(
    batch_size=32, num_workers=1,
    dataset=dict(data_root='data/emoji/train', **_data))
val_dataloader = dict(
    batch_size=32, num_workers=1,
    dataset=dict(data_root='data/emoji/test', **_data))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=550, val_interval=550)
default_hooks = dict(checkpoint=dict(interval=275))
