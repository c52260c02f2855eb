from .encoder import IntroVAEEncoder, reparameterize
from .generator import IntroVAEGenerator
from .introvae import IntroVAE
from .losses import kl_divergence, margin_hinge, reconstruction_error
from .residual_block import ResidualBlock
from .soft_introvae import SoftIntroVAE, exp_elbo

__all__ = [
    'IntroVAEEncoder', 'IntroVAEGenerator', 'IntroVAE', 'SoftIntroVAE', 'ResidualBlock',
    'reparameterize', 'exp_elbo',
    'kl_divergence', 'reconstruction_error', 'margin_hinge'
]
