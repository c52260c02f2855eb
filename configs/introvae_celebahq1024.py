# IntroVAE on CelebA-HQ 1024x1024, the paper's headline setting (official 1024 script):
# channels 16..512, m = 500, beta = 0.01, alpha = 0.5 * weight_neg = 0.5,
# a plain-VAE warm-up of 4 epochs, batch 12 as 4 GPUs x 3 images:
#   bash tools/dist_train.sh configs/introvae_celebahq1024.py 4
# 4 epochs of 29,000 images at batch 12 = 9,667 iterations. The warm-up is the official
# train_vae's L_REG + L_AE (weight 1 on L_AE, not beta; model.vae_warmup_loss='official').
# The official layout (shortcut='official', inherited): the two 512 -> 512 blocks between
# the three 512 entries get 1x1 projections in each network;
# 27,969,616 encoder + 21,428,147 generator parameters.
_base_ = ['introvae_celebahq256.py']

image_size = 1024
model = dict(
    architecture=dict(image_size=image_size, channels=(16, 32, 64, 128, 256, 512, 512, 512)),
    m=500.0,
    alpha=0.5,
    beta=0.01,
    vae_warmup_iters=9667)

train_dataloader = dict(batch_size=3, dataset=dict(image_size=image_size))
val_dataloader = dict(batch_size=4, dataset=dict(image_size=image_size))  # even: MS-SSIM pairs
test_dataloader = val_dataloader

train_cfg = dict(max_iters=300000)
