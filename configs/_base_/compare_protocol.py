# The evaluation protocol of tools/compare.py: every compared model, whatever its own
# config's evaluator says, is evaluated by the metrics named here, on the same held-out
# images, with the same number of generated images. Each entry is one metric by name
# (tools/compare.py --metrics NAME ...): `metric` is the evaluator entry (MMagic's
# METRICS registry), `columns` the results it reports as
# (key in metrics.json, column title, format, 'lower' or 'higher' is better).
# A new metric is one more entry here (its type registered by mmintrovae or MMagic).
#
# sample_metrics judge prior samples and apply to every generative model;
# reconstruction_metrics need an encoder (G(E(x)) and KL terms) and apply only to
# models whose config has `model.encoder`.
# `image_shape=None`: filled in by tools/compare.py from the data config (image size
# and colour type), so SWD also works for generators that do not carry their shape.

fake_nums = 500  # generated images per metric (tools/compare.py --fake-nums)
# which generator is evaluated and drawn: 'auto' (the EMA generator of a config that keeps
# one, model.ema_config, else the live one: each model as its recipe would sample it),
# 'orig' or 'ema'
sample_model = 'auto'

sample_metrics = dict(
    # One Inception pass gives FID, KID (unbiased: it ranks models on small reference sets,
    # where FID's bias and noise are as large as the differences) and precision/recall.
    Inception=dict(
        metric=dict(type='IntroVAEInceptionMetrics', fake_nums=fake_nums, real_nums=-1,
                    sample_model=sample_model),
        columns=[('KID/mean', 'KID', '{:.4f}', 'lower'),
                 ('FID/fid', 'FID', '{:.1f}', 'lower'),
                 ('PR/precision', 'precision', '{:.3f}', 'higher'),
                 ('PR/recall', 'recall', '{:.3f}', 'higher')]),
    SWD=dict(
        metric=dict(type='IntroVAESWD', prefix='SWD', fake_nums=fake_nums, image_shape=None,
                    sample_model=sample_model),
        columns=[('SWD/avg', 'SWD x1e3', '{:.1f}', 'lower')]),
    MS_SSIM=dict(
        metric=dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=fake_nums,
                    sample_model=sample_model),
        # lower: more diverse (down to the data's own MS-SSIM), so no 'better' direction
        columns=[('MS-SSIM/avg', 'MS-SSIM of samples (lower: more diverse)', '{:.3f}',
                  None)]),
)

reconstruction_metrics = dict(
    PSNR=dict(metric=dict(type='PSNR', prefix='rec'),
              columns=[('rec/PSNR', 'rec. PSNR dB', '{:.2f}', 'higher')]),
    SSIM=dict(metric=dict(type='SSIM', prefix='rec'),
              columns=[('rec/SSIM', 'rec. SSIM', '{:.3f}', 'higher')]),
    KL=dict(metric=dict(type='IntroVAEKL'),
            columns=[('kl/kl_real', 'KL real', '{:.1f}', None),
                     ('kl/kl_fake_minus_real', 'KL samples - real', '{:.1f}', None)]),
)
