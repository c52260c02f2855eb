"""IntroVAE for MMagic. Importing this package registers its modules in MMagic's registries."""
from .version import __version__
from . import engine  # noqa: F401  (safe checkpoint loading, atomic saving)
from .engine import rng_state_hook  # noqa: F401  (registers RNGStateHook: exact resume)
from .engine import fast_resume_loop  # noqa: F401  (FastResumeIterBasedTrainLoop: fast resume)
from .engine import distributed  # noqa: F401  (IntroVAERunner, IntroVAEDistributedDataParallel)
from .engine import amp  # noqa: F401  (registers IntroVAEAmpOptimWrapper: --amp)
from .engine import time_budget  # noqa: F401  (registers TrainTimeBudgetHook)
from .engine import introspection_monitor_hook  # noqa: F401  (IntrospectionMonitorHook)
from . import evaluation  # noqa: F401  (registers IntroVAEFID, IntroVAEKL)
from . import datasets  # noqa: F401  (registers IntroVAEImageFolder)
from . import models  # noqa: F401  (registers IntroVAE, SoftIntroVAE and their networks)
from .engine import dcgan_init  # noqa: F401  (MMagic's DCGAN networks: init_weights that works)

__all__ = ['__version__']
