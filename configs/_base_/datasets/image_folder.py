# A flat folder of images per split. Images are resized (bicubic) to
# `image_size` and flipped horizontally for training, as in the official code.
dataset_type = 'IntroVAEImageFolder'
data_root = 'data/celebahq'
hint = 'put CelebA-HQ images under data/celebahq/train and data/celebahq/test'

train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root + '/train', image_size=256, flip=True,
                 hint=hint))

val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root + '/test', image_size=256, flip=False,
                 hint=hint))

test_dataloader = val_dataloader
