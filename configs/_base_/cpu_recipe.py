# What the small recipes that train on a CPU share: fewer samples for the
# sample metrics (Inception runs at about 0.4 s per image on a CPU), frequent
# logs, and grids every 250 iterations.
_base_ = ['../introvae_celebahq256.py']

# oneDNN's convolutions skip a layout reorder per call in NHWC: 1.21x per
# iteration at 32x32 and 1.27x at 64x64 on the 2-core CPU (README, Performance).
model = dict(channels_last=True)

fake_nums = 500
val_evaluator = dict(metrics=[
    dict(type='PSNR', prefix='rec'),
    dict(type='SSIM', prefix='rec'),
    dict(type='MSE', prefix='rec'),
    dict(type='IntroVAEKL'),
    dict(type='IntroVAESWD', prefix='SWD', fake_nums=fake_nums),
    # FID, KID (mean, std) and precision/recall from one Inception pass (_base_/evaluation.py)
    dict(type='IntroVAEInceptionMetrics', fake_nums=fake_nums, real_nums=-1, sample_model='orig'),
    dict(type='MS_SSIM', prefix='MS-SSIM', fake_nums=fake_nums, sample_model='orig'),
])
test_evaluator = val_evaluator

default_hooks = dict(logger=dict(interval=20))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='VisualizationHook', interval=250, fixed_input=True,
         vis_kwargs_list=[
             dict(type='GAN', name='samples', n_samples=64, n_row=8),
             dict(type='Data', name='reconstructions', target_keys=['gt_img', 'pred_img'],
                  n_samples=32),
         ]),
    dict(type='IntrospectionMonitorHook'),  # see _base_/default_runtime.py
]
