# MMagic's own DCGAN (its DCGAN model, networks and vanilla GAN losses, from MMagic's
# base config) on the emoji faces, as the baseline the IntroVAE emoji recipe is measured
# against: networks of the same width (generator 128 -> 16 channels, discriminator
# 16 -> 128, 4x4 up to 64x64), noise of the IntroVAE latent size (128), and the same data,
# batch, iterations and sample metrics as configs/introvae_emoji64.py. Optimisers as
# MMagic's CelebA DCGAN recipe: Adam lr 2e-4, betas (0.5, 0.999).
# The plugin (custom_imports) makes the DCGAN networks' init_weights work with
# MMEngine 0.10.7 (mmintrovae/engine/dcgan_init.py). Data: tools/prepare_data.py emoji.
_base_ = [
    'mmagic::_base_/models/dcgan/base_dcgan_64x64.py',
    '_base_/datasets/image_folder.py',
    '_base_/default_runtime.py',
]

image_size = 64
noise_size = 128
model = dict(
    noise_size=noise_size,
    # images in [-1, 1], RGB, for the generator's tanh
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3, output_channel_order='RGB'),
    generator=dict(output_scale=image_size, base_channels=128, noise_size=noise_size),
    discriminator=dict(input_scale=image_size, output_scale=4, base_channels=16))

optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    generator=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999))),
    discriminator=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999))))

_data = dict(image_size=image_size, hint='run: python tools/prepare_data.py emoji')
train_dataloader = dict(
    batch_size=32, num_workers=1,
    dataset=dict(data_root='data/emoji/train', **_data))
val_dataloader = dict(
    batch_size=32, num_workers=1,
    dataset=dict(data_root='data/emoji/test', **_data))
test_dataloader = val_dataloader

# The sample metrics of the CPU recipes (configs/_base_/cpu_recipe.py); DCGAN has no
# encoder, so no reconstruction or KL metrics. SWD needs the image shape: DCGANGenerator
# does not carry it as the IntroVAE generator does.
fake_nums = 500
val_evaluator = dict(type='Evaluator', metrics=[
    dict(type='IntroVAESWD', prefix='SWD', fake_nums=fake_nums,
         image_shape=(3, image_size, image_size)),
    dict(type='IntroVAEInceptionMetrics', fake_nums=fake_nums, real_nums=-1,
         sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=fake_nums, sample_model='orig'),
])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=1000, val_interval=1000)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=500))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='VisualizationHook', interval=250, fixed_input=True,
         vis_kwargs_list=[dict(type='GAN', name='samples', n_samples=64, n_row=8)]),
]
