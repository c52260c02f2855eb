# Soft-IntroVAE (Daniel & Tamar, CVPR 2021) on CelebA-HQ 256x256 with the authors'
# suggested setting for 256: beta_rec = 1, beta_kl = 0.5, beta_neg = 1024, gamma_r = 1e-8,
# latent size 256, batch 8, channels 64, 128, 256, 512, 512, 512, Adam 2e-4 (inherited),
# no VAE warm-up. Data, evaluation and iterations are the IntroVAE 256 recipe's.
_base_ = ['introvae_celebahq256.py']

model = dict(
    _delete_=True,  # IntroVAE's m, alpha, beta and alpha_generator do not apply
    type='SoftIntroVAE',
    # shortcut='identity': the plain layout, not the official IntroVAE main.py's 1x1
    # projections on 512 -> 512 blocks that the IntroVAE 256 recipe reproduces.
    architecture=dict(_base_.model.architecture, channels=(64, 128, 256, 512, 512, 512),
                      latent_dim=256, shortcut='identity'),
    encoder=_base_.model.encoder,
    generator=_base_.model.generator,
    data_preprocessor=_base_.model.data_preprocessor,
    beta_rec=1.0,
    beta_kl=0.5,
    beta_neg=1024.0,
    gamma_r=1e-8,
    alpha=2.0,
    vae_warmup_iters=0)

train_dataloader = dict(batch_size=8)
