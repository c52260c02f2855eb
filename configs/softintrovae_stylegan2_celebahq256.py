# Style-based Soft-IntroVAE on CelebA-HQ 256x256 (GPU): MMagic's StyleGAN2Generator (with
# its 8-layer mapping network) as the decoder, MMagic's StyleGAN2Discriminator as the
# encoder backbone (minibatch stddev off, its realness score replaced by a linear head to
# mu and logvar; see mmintrovae/models/backbone_encoder.py), trained with the Soft-IntroVAE
# authors' settings for their style-based model: latent 512, beta_kl = 0.2,
# beta_rec = 0.05, beta_neg = 512 (their value at 256x256), data in [-1, 1], Adam with
# betas (0, 0.99), and an EMA of the decoder with a half-life of 10k images. Data,
# metrics and iterations are the residual 256 recipe's (softintrovae_celebahq256.py).
# StyleGAN2's injected noise is drawn afresh on every decode in training, as in the
# authors' code; the inference tools decode with the generator's stored noise maps
# (docs/notes/seam.md).
_base_ = ['softintrovae_celebahq256.py']

latent = 512
image_size = 256
batch_size = 8
# EMA: weight of the old average per iteration 0.5 ** (batch / 10000), i.e. 10k images
# halve a parameter's distance to the average.
ema_half_life_images = 10000
model = dict(
    architecture=None,  # the residual networks' shared arguments
    generator=dict(_delete_=True, type='StyleGAN2Generator', out_size=image_size,
                   style_channels=latent, num_mlps=8),
    encoder=dict(
        _delete_=True, type='BackboneEncoder', latent_dim=latent, image_size=image_size,
        backbone=dict(type='StyleGAN2Discriminator', in_size=image_size,
                      mbstd_cfg=dict(group_size=1, channel_groups=1))),
    # [-1, 1], RGB
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3),
    beta_rec=0.05,
    beta_kl=0.2,
    beta_neg=512.0,
    ema_config=dict(type='ExponentialMovingAverage', interval=1,
                    momentum=1 - 0.5**(batch_size / ema_half_life_images)))

optim_wrapper = dict(
    encoder=dict(optimizer=dict(betas=(0.0, 0.99))),
    generator=dict(optimizer=dict(betas=(0.0, 0.99))))
train_dataloader = dict(batch_size=batch_size)
