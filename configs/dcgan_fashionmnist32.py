# MMagic's own DCGAN on Fashion-MNIST 32x32 grey, the GAN baseline of the Fashion-MNIST
# IntroVAE recipe: networks of the same width (generator 128 -> 32 channels, discriminator
# 32 -> 128, 4x4 up to 32x32), noise of the IntroVAE latent size (32), and the same data,
# batch, iterations and sample metrics as configs/introvae_fashionmnist32.py.
# Data: python tools/prepare_data.py fashion_mnist.
_base_ = ['dcgan_emoji64.py']

image_size = 32
noise_size = 32
model = dict(
    noise_size=noise_size,
    data_preprocessor=dict(mean=[127.5], std=[127.5], output_channel_order=None),
    generator=dict(output_scale=image_size, base_channels=128, noise_size=noise_size,
                   out_channels=1),
    discriminator=dict(input_scale=image_size, output_scale=4, base_channels=32,
                       in_channels=1))

_data = dict(image_size=image_size, color_type='grayscale',
             hint='run: python tools/prepare_data.py fashion_mnist')
train_dataloader = dict(
    batch_size=64, num_workers=1,
    dataset=dict(data_root='data/fashion_mnist/train', **_data))
val_dataloader = dict(
    batch_size=64, num_workers=1,
    dataset=dict(data_root='data/fashion_mnist/test', max_images=500, **_data))
test_dataloader = val_dataloader

fake_nums = 500
val_evaluator = dict(type='Evaluator', metrics=[
    dict(type='IntroVAESWD', prefix='SWD', fake_nums=fake_nums,
         image_shape=(1, image_size, image_size)),
    dict(type='IntroVAEInceptionMetrics', fake_nums=fake_nums, real_nums=-1,
         sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=fake_nums, sample_model='orig'),
])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=800, val_interval=800)
default_hooks = dict(checkpoint=dict(interval=400))
