"""Inference with a trained IntroVAE: loading, prior samples, reconstructions, interpolation.

    >>> from mmintrovae.apis import init_model, sample
    >>> model = init_model('configs/introvae_emoji64.py', 'work_dirs/.../iter_1500.pth')
    >>> images = sample(model, 16, seed=0)  # uint8 (16, 64, 64, 3) RGB

Images going in and out are uint8 numpy arrays (N, H, W, C), RGB (C=3) or grey (C=1).
"""
from .images import list_images, make_grid, prepare_images, save_grid, save_image
from .interpolation import interpolate, latent_of, save_gif, save_video, slerp, video_supported
from .model_loading import init_model, load_weights
from .reconstruction import reconstruct_folder, reconstruct_images
from .sampling import decode, decode_kwargs, generator_of, prior_noise, sample

__all__ = [
    'init_model', 'load_weights', 'sample', 'prior_noise', 'decode', 'decode_kwargs',
    'generator_of',
    'reconstruct_images', 'reconstruct_folder', 'interpolate', 'latent_of', 'slerp',
    'save_gif', 'save_video', 'video_supported', 'list_images', 'prepare_images',
    'make_grid', 'save_grid', 'save_image'
]
