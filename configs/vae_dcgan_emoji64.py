# configs/vae_emoji64.py with MMagic's DCGAN networks instead of the residual ones
# (generator: DCGANGenerator; encoder: BackboneEncoder around DCGANDiscriminator), sized
# in _base_/models/dcgan_emoji64.py: the plain-VAE baseline of the DCGAN-network emoji
# recipes. Everything else (objective, data, optimizers, iterations, metrics) is that
# recipe's.
_base_ = ['vae_emoji64.py', '_base_/models/dcgan_emoji64.py']

model = dict(
    architecture=None,  # the residual networks' shared arguments
    encoder=dict(_base_.dcgan_encoder, _delete_=True),
    generator=dict(_base_.dcgan_generator, _delete_=True))
