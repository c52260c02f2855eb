# Runtime shared by every mmintrovae recipe: MMagic scope, the plugin import,
# iteration-based training with logs, checkpoints, TensorBoard and sample grids.
default_scope = 'mmagic'
custom_imports = dict(imports=['mmintrovae'], allow_failed_imports=False)

randomness = dict(seed=2018, diff_rank_seed=True)

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # Progress, losses and ETA every `interval` iterations.
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        interval=5000,
        by_epoch=False,
        max_keep_ckpts=5,
        save_last=True,
        save_optimizer=True,
        # the best checkpoint by FID (see _base_/evaluation.py) is kept as well
        save_best='FID/fid',
        rule='less'),
    sampler_seed=dict(type='DistSamplerSeedHook'))

# Grids of prior samples and of real images beside their reconstructions,
# written to <work_dir>/<timestamp>/vis_data and to TensorBoard.
custom_hooks = [
    # Saves/restores the RNG states so a resumed run continues exactly.
    dict(type='RNGStateHook'),
    dict(
        type='VisualizationHook',
        interval=1000,
        fixed_input=True,
        vis_kwargs_list=[
            dict(type='GAN', name='samples'),
            dict(type='Data', name='reconstructions', target_keys=['gt_img', 'pred_img'],
                 n_samples=16),
        ]),
    # Warns, then stops with advice, when the introspective game collapses (KL(real) far
    # below m while KL(rec)/KL(fake) sit above it, L_AE rising far above its warm-up value,
    # samples losing their diversity): mmintrovae/engine/introspection_monitor_hook.py.
    dict(type='IntrospectionMonitorHook'),
]

vis_backends = [dict(type='VisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)

log_level = 'INFO'
log_processor = dict(type='LogProcessor', by_epoch=False, window_size=50)
load_from = None
resume = False

# Distributed runs (tools/dist_train.sh, tools/slurm_train.sh): MMEngine's Runner and
# MMSeparateDistributedDataParallel (encoder and generator each in their own DDP, so each
# optimizer step all-reduces its own network's gradients); these subclasses also run on
# CPU-only machines with gloo (mmintrovae/engine/distributed.py). With GPUs they behave
# as MMEngine's own classes. SyncBN: --cfg-options sync_bn=torch.
runner_type = 'mmagic.IntroVAERunner'
model_wrapper_cfg = dict(
    type='mmagic.IntroVAEDistributedDataParallel',  # scoped: Runner.wrap_model looks it up
    broadcast_buffers=False,
    find_unused_parameters=False)

# Iteration-based training; on --resume the sampler skips the batches already trained on
# without loading them, and each sample's flip is seeded by its position in the stream, so
# the resumed run sees the same batches as an uninterrupted one (mmintrovae/engine/
# fast_resume_loop.py). MMEngine's IterBasedTrainLoop would decode every skipped batch.
train_cfg = dict(
    type='FastResumeIterBasedTrainLoop', max_iters=100000, val_begin=1, val_interval=5000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')
