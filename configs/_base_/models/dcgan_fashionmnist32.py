# DCGAN's networks (MMagic's DCGANGenerator, DCGANDiscriminator as the encoder backbone)
# sized like the residual Fashion-MNIST recipe: 32x32 grey, latent 32, about as wide
# (128 -> 64 -> 32 channels up, 32 -> 64 -> 128 down). The generator has no output
# activation, like the residual one, since the IntroVAE recipes train on [0, 1] data.
# Used as `encoder=_base_.dcgan_encoder, generator=_base_.dcgan_generator`.
dcgan_latent = 32
dcgan_generator = dict(
    type='DCGANGenerator', output_scale=32, out_channels=1, base_channels=128,
    noise_size=dcgan_latent, out_act_cfg=None)
dcgan_encoder = dict(
    type='BackboneEncoder', latent_dim=dcgan_latent, image_size=32, image_channels=1,
    backbone=dict(type='DCGANDiscriminator', input_scale=32, output_scale=4, in_channels=1,
                  base_channels=32, out_channels=256, out_act_cfg=dict(type='LeakyReLU')))
