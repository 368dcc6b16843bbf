"""NeuS SDF renderer: rays x feature volume -> RGB, depth (docs/architecture.md).

renderer.py  `Renderer` (built once from the config): rays, batches, whole images, losses
sampling.py  ray/box intervals, stratified + NeuS importance samples, compositing weights
targets.py   the volume a batch target is rendered from: direct (lifted) or predicted
images.py    ImageNet de-normalisation, mask and block-mean helpers for image outputs
cameras.py   TensorBoard previews of the first sample's cameras
"""

from mim4d_jax.rendering.renderer import Renderer

__all__ = ["Renderer"]
