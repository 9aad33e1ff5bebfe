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

from world_models.backbones.egru import EGRU
from world_models.backbones.event_s5 import EventS5
from world_models.backbones.gru import GRU
from world_models.backbones.mamba import Mamba
from world_models.backbones.s5 import S5, ssm_param_labels

BACKBONES = {
    "gru": GRU,
    "s5": S5,
    "mamba": Mamba,
    "egru": EGRU,
    "event_s5": EventS5,
}

__all__ = ["BACKBONES", "EGRU", "EventS5", "GRU", "Mamba", "S5", "ssm_param_labels"]
