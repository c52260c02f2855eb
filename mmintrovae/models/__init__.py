from .backbone_encoder import BackboneEncoder, neutralise_minibatch_stddev
from .encoder import IntroVAEEncoder, reparameterize
from .generator import IntroVAEGenerator
from .introvae import IntroVAE
from .losses import kl_divergence, margin_hinge, reconstruction_error
from .network_contract import check_pair, image_shape_of, latent_size, probe_image_shape
from .residual_block import ResidualBlock
from .soft_introvae import SoftIntroVAE, exp_elbo

__all__ = [
    'IntroVAEEncoder', 'IntroVAEGenerator', 'BackboneEncoder', 'neutralise_minibatch_stddev',
    'check_pair', 'image_shape_of', 'latent_size', 'probe_image_shape', 'IntroVAE',
    'SoftIntroVAE', 'ResidualBlock',
    'reparameterize', 'exp_elbo',
    'kl_divergence', 'reconstruction_error', 'margin_hinge'
]
