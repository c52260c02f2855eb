# IntroVAE on CelebA-HQ 128x128. There is no official 128 script; these are the
# settings commonly used: channels 64..512, batch 64, m = 110, beta = 0.5,
# alpha = 0.25, and about one epoch (450 iterations) of VAE warm-up.
_base_ = ['introvae_celebahq256.py']

image_size = 128
model = dict(
    architecture=dict(image_size=image_size, channels=(64, 128, 256, 512, 512)),
    m=110.0,
    beta=0.5,
    vae_warmup_iters=450)

train_dataloader = dict(batch_size=64, dataset=dict(image_size=image_size))
val_dataloader = dict(batch_size=64, dataset=dict(image_size=image_size))
test_dataloader = val_dataloader

# SWD's image shape follows the resolution.
val_evaluator = dict(metrics=[
    dict(type='PSNR', prefix='rec'),
    dict(type='SSIM', prefix='rec'),
    dict(type='MSE', prefix='rec'),
    dict(type='IntroVAEKL'),
    dict(type='SWD', prefix='SWD', fake_nums=10000, image_shape=(3, 128, 128), sample_model='orig'),
    dict(type='IntroVAEFID', prefix='FID', fake_nums=10000, real_nums=-1, sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=10000, sample_model='orig'),
])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=150000)
