# IntroVAE on Fashion-MNIST, 32x32 grey (the 28x28 images padded by 2 pixels), a
# recipe that trains on a CPU. Data: python tools/prepare_data.py fashion_mnist
# (Debian package dataset-fashion-mnist) -> data/fashion_mnist/{train,test}.
_base_ = ['_base_/cpu_recipe.py']

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
    dataset=dict(data_root='data/fashion_mnist/test', max_images=500, **_data))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=800, val_interval=800)
default_hooks = dict(checkpoint=dict(interval=400))
