# Soft-IntroVAE (Daniel & Tamar, CVPR 2021) on Fashion-MNIST 32x32 grey: the IntroVAE
# recipe (data, networks, optimizers, iterations, evaluation) with the soft objective and
# the authors' Fashion-MNIST setting: beta_rec = beta_kl = 1, beta_neg = 256 (they use 128
# when the KL of real images stays above that of samples), gamma_r = 1e-8, latent size 32,
# no VAE warm-up. The batch stays at the IntroVAE recipe's 64 (the authors use 128).
_base_ = ['introvae_fashionmnist32.py']

model = dict(
    _delete_=True,  # IntroVAE's m, alpha, beta and alpha_generator do not apply
    type='SoftIntroVAE',
    # the networks and the data range are the IntroVAE recipe's
    architecture=_base_.model.architecture,
    encoder=_base_.model.encoder,
    generator=_base_.model.generator,
    data_preprocessor=_base_.model.data_preprocessor,
    channels_last=_base_.model.channels_last,
    latent_prior=_base_.model.latent_prior,
    beta_rec=1.0,
    beta_kl=1.0,
    beta_neg=256.0,
    gamma_r=1e-8,
    alpha=2.0,
    vae_warmup_iters=0)
