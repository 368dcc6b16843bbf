"""NeuS SDF renderer: rays x feature volume -> RGB, depth (docs/architecture.md)."""

from mim4d_jax.models.fields import SDFField
from mim4d_jax.rendering.losses import render_losses
from mim4d_jax.rendering.renderer import render_rays

__all__ = ["SDFField", "render_losses", "render_rays"]
