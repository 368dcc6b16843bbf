"""Pre-training objectives: losses computed from a model and a batch, one module each
(`mim4d`, `croco`, `pointcontrast`), combined by weight by the registry."""

from mim4d_jax.objectives.registry import (
    OBJECTIVES,
    Objective,
    active_objectives,
    build_loss_fn,
    check_config,
)

__all__ = ["OBJECTIVES", "Objective", "active_objectives", "build_loss_fn", "check_config"]
