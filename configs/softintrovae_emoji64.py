# Soft-IntroVAE (Daniel & Tamar, CVPR 2021) on Noto emoji faces at 64x64: the IntroVAE
# emoji recipe with the soft objective. The authors have no 64x64 setting; this uses
# their CIFAR-10 one (beta_rec = beta_kl = 1, beta_neg = 256, gamma_r = 1e-8, latent 128,
# no VAE warm-up). Untuned. Data: python tools/prepare_data.py emoji
_base_ = ['introvae_emoji64.py']

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
