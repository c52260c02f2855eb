# DCGAN's networks (MMagic's DCGANGenerator, DCGANDiscriminator as the encoder backbone)
# sized like the residual emoji recipe: 64x64 RGB, latent 128, 128 -> 64 -> 32 -> 16
# channels up and 16 -> 32 -> 64 -> 128 down. No output activation (data in [0, 1]).
# Used as `encoder=_base_.dcgan_encoder, generator=_base_.dcgan_generator`.
dcgan_latent = 128
dcgan_generator = dict(
    type='DCGANGenerator', output_scale=64, out_channels=3, base_channels=128,
    noise_size=dcgan_latent, out_act_cfg=None)
dcgan_encoder = dict(
    type='BackboneEncoder', latent_dim=dcgan_latent, image_size=64, image_channels=3,
    backbone=dict(type='DCGANDiscriminator', input_scale=64, output_scale=4, in_channels=3,
                  base_channels=16, out_channels=512, out_act_cfg=dict(type='LeakyReLU')))
