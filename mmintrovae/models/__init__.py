from .encoder import IntroVAEEncoder, reparameterize
from .generator import IntroVAEGenerator
from .introvae import IntroVAE
from .losses import kl_divergence, margin_hinge, reconstruction_error
from .residual_block import ResidualBlock

__all__ = [
    'IntroVAEEncoder', 'IntroVAEGenerator', 'IntroVAE', 'ResidualBlock', 'reparameterize',
    'kl_divergence', 'reconstruction_error', 'margin_hinge'
]
