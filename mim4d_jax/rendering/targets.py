"""The volume a render target is drawn from: the frame's directly lifted volume, or the one the
history decoder predicts for it from the other frames (MIM4D's two rendering branches)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

VOLUMES = ("direct", "predicted")


def target_volume(
    model, vols_btzyxc: jax.Array, vol2ref_bt44: jax.Array, key_b: jax.Array, which: str
) -> jax.Array:
    """(B, Z, Y, X, C) volume of frame `key_b[b]` of each sample, `which` in VOLUMES.

    `model` is a MIM4D (anything with `predict(vols, vol2ref, key)`); `vols_btzyxc` its lift.
    """
    if which == "direct":
        return vols_btzyxc[jnp.arange(vols_btzyxc.shape[0]), key_b]
    if which == "predicted":
        return model.predict(vols_btzyxc, vol2ref_bt44, key_b)
    raise ValueError(f"unknown volume {which!r}; expected one of {VOLUMES}")
