# IntroVAE with the official code's optimisation: two Adam optimizers, lr 2e-4,
# betas (0.9, 0.999) (the official beta1=0.5 flag is parsed but never used),
# no schedule, no clipping. Data in [0, 1] (mean 0, std 255), RGB.
model = dict(
    type='IntroVAE',
    architecture=dict(image_size=256, channels=(32, 64, 128, 256, 512, 512), latent_dim=512,
                      image_channels=3),
    encoder=dict(type='IntroVAEEncoder'),
    generator=dict(type='IntroVAEGenerator'),
    data_preprocessor=dict(
        type='DataPreprocessor', mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],
        output_channel_order='RGB'),
    m=120.0,
    alpha=0.25,
    beta=0.05,
    alpha_generator=0.5,
    vae_warmup_iters=0)

optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    encoder=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))),
    generator=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))))
