"""IntroVAE for MMagic. Importing this package registers its modules in MMagic's registries."""
from .version import __version__
from . import models  # noqa: F401  (registers IntroVAE, IntroVAEEncoder, IntroVAEGenerator)

__all__ = ['__version__']
