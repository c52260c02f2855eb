# IntroVAE on Noto colour emoji faces at 64x64: the embedded default, small
# enough to train on a laptop CPU in minutes. Data: python tools/prepare_data.py emoji
# (Debian package fonts-noto-color-emoji) -> data/emoji/{train,test}.
_base_ = ['introvae_celebahq256.py']

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

# Fewer samples than the CelebA-HQ recipes: Inception runs at about 0.4 s per image on a CPU.
val_evaluator = dict(metrics=[
    dict(type='PSNR', prefix='rec'),
    dict(type='SSIM', prefix='rec'),
    dict(type='MSE', prefix='rec'),
    dict(type='IntroVAEKL'),
    dict(type='IntroVAESWD', prefix='SWD', fake_nums=500),
    dict(type='IntroVAEFID', prefix='FID', fake_nums=500, real_nums=-1, sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=500, sample_model='orig'),
])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=550, val_interval=550)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=275))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='VisualizationHook', interval=250, fixed_input=True,
         vis_kwargs_list=[
             dict(type='GAN', name='samples', n_samples=64, n_row=8),
             dict(type='Data', name='reconstructions', target_keys=['gt_img', 'pred_img'],
                  n_samples=32),
         ])
]
