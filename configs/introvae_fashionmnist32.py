# IntroVAE on Fashion-MNIST, 32x32 grey (the 28x28 images padded by 2 pixels), a
# recipe that trains on a CPU. Data: python tools/prepare_data.py fashion_mnist
# (Debian package dataset-fashion-mnist) -> data/fashion_mnist/{train,test}.
_base_ = ['introvae_celebahq256.py']

image_size = 32
model = dict(
    architecture=dict(image_size=image_size, channels=(32, 64, 128), latent_dim=32,
                      image_channels=1),
    data_preprocessor=dict(mean=[0.0], std=[255.0], output_channel_order=None),
    m=30.0,
    alpha=0.25,
    beta=1.0,
    vae_warmup_iters=200)

_data = dict(image_size=image_size, color_type='grayscale',
             hint='run: python tools/prepare_data.py fashion_mnist')
train_dataloader = dict(
    batch_size=64, num_workers=1,
    dataset=dict(data_root='data/fashion_mnist/train', **_data))
val_dataloader = dict(
    batch_size=64, num_workers=1,
    dataset=dict(data_root='data/fashion_mnist/test', max_images=300, **_data))
test_dataloader = val_dataloader

# Fewer samples than the CelebA-HQ recipes: Inception runs at about 0.4 s per image on a CPU.
val_evaluator = dict(metrics=[
    dict(type='PSNR', prefix='rec'),
    dict(type='SSIM', prefix='rec'),
    dict(type='MSE', prefix='rec'),
    dict(type='IntroVAEKL'),
    dict(type='IntroVAESWD', prefix='SWD', fake_nums=300),
    dict(type='IntroVAEFID', prefix='FID', fake_nums=300, real_nums=-1, sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=300, sample_model='orig'),
])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=800, val_interval=800)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=400))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='VisualizationHook', interval=250, fixed_input=True,
         vis_kwargs_list=[
             dict(type='GAN', name='samples', n_samples=64, n_row=8),
             dict(type='Data', name='reconstructions', target_keys=['gt_img', 'pred_img'],
                  n_samples=32),
         ])
]
