"""IntroVAE for MMagic. Importing this package registers its modules in MMagic's registries."""
from .version import __version__
from . import engine  # noqa: F401  (safe checkpoint loading, atomic saving)
from .engine import rng_state_hook  # noqa: F401  (registers RNGStateHook: exact resume)
from .engine import distributed  # noqa: F401  (IntroVAERunner, IntroVAEDistributedDataParallel)
from .engine import amp  # noqa: F401  (registers IntroVAEAmpOptimWrapper: --amp)
from .engine import introspection_monitor_hook  # noqa: F401  (IntrospectionMonitorHook)
from . import evaluation  # noqa: F401  (registers IntroVAEFID, IntroVAEKL)
from . import datasets  # noqa: F401  (registers IntroVAEImageFolder)
from . import models  # noqa: F401  (registers IntroVAE, SoftIntroVAE and their networks)

__all__ = ['__version__']
