from .image_folder import IntroVAEImageFolder

__all__ = ['IntroVAEImageFolder']
