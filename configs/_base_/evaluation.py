# Metrics: reconstruction quality of held-out images, the introspective KL
# balance, and the paper's sample metrics (FID with offline Inception weights,
# SWD and MS-SSIM as in PGGAN's protocol) with KID and precision/recall on the same
# Inception features. Keys: rec/PSNR, kl/kl_fake_minus_real, SWD/avg, FID/fid, KID/mean,
# PR/precision, PR/recall, MS-SSIM/avg. MS-SSIM needs an even val batch size.
fake_nums = 10000

metrics = [
    # First in the ('normal', 'orig') group: the val dataloader itself, every image once.
    dict(type='PSNR', prefix='rec'),
    dict(type='SSIM', prefix='rec'),
    dict(type='MSE', prefix='rec'),
    dict(type='IntroVAEKL'),
    dict(type='IntroVAESWD', prefix='SWD', fake_nums=fake_nums),  # image shape from the model
    # FID/fid, FID/mean, FID/cov, KID/mean, KID/std, PR/precision, PR/recall, PR/density,
    # PR/coverage from one Inception pass (IntroVAEFID's network and FID value).
    dict(type='IntroVAEInceptionMetrics', fake_nums=fake_nums, real_nums=-1,
         sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=fake_nums, sample_model='orig'),
]
val_evaluator = dict(type='Evaluator', metrics=metrics)
test_evaluator = val_evaluator
