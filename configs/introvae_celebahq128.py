# IntroVAE on CelebA-HQ 128x128. There is no official 128 script; these are the
# settings commonly used: channels 64..512, batch 64, m = 110, beta = 0.5,
# alpha = 0.25, and about one epoch (450 iterations) of VAE warm-up (the official
# train_vae's L_REG + L_AE, not L_REG + beta * L_AE). The networks are what the official
# code builds from this channel list (shortcut='official', inherited): the 512 -> 512
# block between the two 512 entries gets a 1x1 projection in each network;
# 22,918,464 encoder + 16,480,963 generator parameters.
_base_ = ['introvae_celebahq256.py']

image_size = 128
model = dict(
    architecture=dict(image_size=image_size, channels=(64, 128, 256, 512, 512)),
    m=110.0,
    beta=0.5,
    vae_warmup_iters=450)

train_dataloader = dict(batch_size=64, dataset=dict(image_size=image_size))
val_dataloader = dict(batch_size=64, dataset=dict(image_size=image_size))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=150000)
