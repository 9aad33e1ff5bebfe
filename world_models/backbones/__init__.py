"""Sequence backbones for the world models, as standalone Flax linen modules.

Every backbone has the same interface (time-major ``[T, B, ...]`` sequences):

- ``initial_state(batch_size)``: the carry at an episode start (a pytree with leading axis B; learned);
- ``step(carry, x, reset) -> (carry, y)``: one step, ``x [B, D]``, ``reset [B]``, ``y [B, features]``;
- ``scan(carry, xs, resets) -> (carry, ys)``: a sequence, ``xs [T, B, D]``, ``resets [T, B]``,
  ``ys [T, B, features]``, equal to a loop of ``step``. ``resets[t]`` restarts from
  ``initial_state`` before consuming ``xs[t]``. With ``return_carries=True`` the first output is
  the carry after every step (leaves ``[T, B, ...]``), from which imagination can start.
  Time-aware backbones also take ``dt``.

``BACKBONES`` maps the config name (``world_model.backbone``) to the module class.
"""

from world_models.backbones.gru import GRU

BACKBONES = {
    "gru": GRU,
}

__all__ = ["BACKBONES", "GRU"]
