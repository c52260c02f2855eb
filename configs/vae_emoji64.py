# A plain VAE on the emoji faces 64x64, the baseline the emoji IntroVAE / Soft-IntroVAE recipes
# and MMagic's DCGAN (configs/dcgan_emoji64.py) are compared with (tools/compare.py): the
# IntroVAE recipe with alpha = alpha_generator = 0 throughout, loss KL(E(x)) + beta * L_AE.
_base_ = ['introvae_emoji64.py']

model = dict(alpha=0.0, alpha_generator=0.0, vae_warmup_iters=0)
