from .backbone_encoder import BackboneEncoder, neutralise_minibatch_stddev
from .encoder import IntroVAEEncoder, reparameterize
from .generator import IntroVAEGenerator
from .introspective_model import IntrospectiveVAE
from .introvae import IntroVAE, IntroVAEObjective
from .losses import kl_divergence, margin_hinge, reconstruction_error
from .network_contract import check_pair, image_shape_of, latent_size, probe_image_shape
from .objective import OBJECTIVES, IntrospectiveObjective, PhaseLoss, build_objective
from .residual_block import ResidualBlock
from .soft_introvae import SoftIntroVAE, SoftIntroVAEObjective, exp_elbo
from .vae import VAE, VAEObjective

__all__ = [
    'IntroVAEEncoder', 'IntroVAEGenerator', 'BackboneEncoder', 'neutralise_minibatch_stddev',
    'check_pair', 'image_shape_of', 'latent_size', 'probe_image_shape',
    'IntrospectiveVAE', 'IntroVAE', 'SoftIntroVAE', 'VAE',
    'OBJECTIVES', 'IntrospectiveObjective', 'PhaseLoss', 'build_objective',
    'IntroVAEObjective', 'SoftIntroVAEObjective', 'VAEObjective', 'ResidualBlock',
    'reparameterize', 'exp_elbo',
    'kl_divergence', 'reconstruction_error', 'margin_hinge'
]
