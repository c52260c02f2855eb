# A plain VAE on Fashion-MNIST 32x32 grey, the baseline IntroVAE and Soft-IntroVAE are
# measured against: the IntroVAE recipe with alpha = alpha_generator = 0 throughout, i.e.
# loss KL(E(x)) + beta * L_AE with beta = 1 (the IntroVAE recipe's own warm-up, never ending).
# The training step then makes one encoder and one generator pass per iteration.
_base_ = ['introvae_fashionmnist32.py']

model = dict(alpha=0.0, alpha_generator=0.0, vae_warmup_iters=0)
