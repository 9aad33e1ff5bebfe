"""One level's latent dynamics on any backbone: a recurrent state-space model (RSSM).

State at step t: the backbone carry, its output ``deter_t`` ``[B, D]`` and the stochastic latent
``stoch_t`` ``[B, S, K]`` (S one-hot categoricals of K classes). The backbone consumes
``[stoch_{t-1}, action_{t-1}]``; the prior predicts ``stoch_t`` from ``deter_t``.

Two posteriors:
  ``state``: ``q(stoch_t | deter_t, embed_t)``, the classic RSSM; training steps through time.
  ``embedding``: ``q(stoch_t | embed_t)``, as in S4WM and R2I; the posterior of a whole sequence is
  known up front, so the backbone trains over it in one (parallel) scan.
Sequences are time-major ``[T, B, ...]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from world_models.backbones import BACKBONES
from world_models.distributions import OneHotCategorical, unimix_logits
from world_models.nets import MLP

SEQUENTIAL_BACKBONES = ("gru", "egru")
POSTERIORS = ("auto", "state", "embedding")  # world_model.posterior; auto: by backbone (resolve_posterior)
# world_model.dynamics_input: how [stoch_{t-1}, action_{t-1}] enter the backbone (RSSM.dynamics_input).
DYNAMICS_INPUTS = ("joint", "split")


class RSSMState(NamedTuple):
    carry: Any  # backbone carry, leaves [B, ...]
    deter: jax.Array  # [B, D]
    stoch: jax.Array  # [B, S, K]


def state_features(state: RSSMState) -> jax.Array:
    """Features read by every head and by the actor-critic: ``[..., D + S*K]``."""
    stoch = state.stoch.reshape(state.stoch.shape[:-2] + (-1,))
    return jnp.concatenate([state.deter, stoch], -1)


def resolve_posterior(posterior: str, backbone: str) -> str:
    """``auto``: the classic posterior for nonlinear recurrent cores, ``embedding`` for SSMs."""
    if posterior == "auto":
        return "state" if backbone in SEQUENTIAL_BACKBONES else "embedding"
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")
    return posterior


def _mask(flags: jax.Array, value: jax.Array) -> jax.Array:
    """Zero ``value [..., *rest]`` where ``flags [...]`` is true."""
    return jnp.where(flags.reshape(flags.shape + (1,) * (value.ndim - flags.ndim)), 0.0, value)


class RSSM(nn.Module):
    """Latent dynamics of one level.

    Attributes:
      backbone: name in ``world_models.backbones.BACKBONES``.
      backbone_kwargs: keyword arguments of the backbone class (besides ``features``).
      deter: backbone width D.
      stoch, classes: S categorical latents of K classes.
      units: width of the input, prior and posterior MLPs.
      unimix: uniform mix of the latent categoricals.
      posterior: ``state`` or ``embedding`` (see module docstring).
      dynamics_input: ``joint``: one Dense -> LayerNorm -> SiLU block on ``[stoch, action]``
        (DreamerV3's first release). ``split``: a block of ``units`` each for the stochastic state and
        the action, concatenated (DreamerV3's later release). Measured on Pendulum-v1's state
        (``scripts.bench_world_model``, README): ``joint`` learns the torque's one-step effect in
        about 2,000 updates, ``split`` imagines two thirds of it at 4,000, so ``joint`` is the default.
    """

    backbone: str
    backbone_kwargs: dict
    deter: int
    stoch: int
    classes: int
    units: int
    unimix: float
    posterior: str
    dynamics_input: str = "joint"

    def setup(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.dynamics_input not in DYNAMICS_INPUTS:
            raise ValueError(f"dynamics_input must be one of {DYNAMICS_INPUTS}, got {self.dynamics_input!r}")
        self.core = BACKBONES[self.backbone](features=self.deter, **dict(self.backbone_kwargs))
        if self.dynamics_input == "split":
            self.stoch_input_net = MLP(self.units, 1)
            self.action_input_net = MLP(self.units, 1)
        else:
            self.input_net = MLP(self.units, 1)
        self.prior_net = MLP(self.units, 1)
        self.prior_out = nn.Dense(self.stoch * self.classes)
        self.posterior_net = MLP(self.units, 1)
        self.posterior_out = nn.Dense(self.stoch * self.classes)

    def initial(self, batch_size: int) -> RSSMState:
        """The state before the first step of an episode."""
        return RSSMState(
            carry=self.core.initial_state(batch_size),
            deter=jnp.zeros((batch_size, self.deter)),
            stoch=jnp.zeros((batch_size, self.stoch, self.classes)),
        )

    def _logits(self, net: nn.Module, out: nn.Module, x: jax.Array) -> jax.Array:
        logits = out(net(x)).reshape(x.shape[:-1] + (self.stoch, self.classes))
        return unimix_logits(logits, self.unimix)

    def prior_logits(self, deter: jax.Array) -> jax.Array:
        return self._logits(self.prior_net, self.prior_out, deter)

    def posterior_logits(self, deter: jax.Array, embed: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([deter, embed], -1) if self.posterior == "state" else embed
        return self._logits(self.posterior_net, self.posterior_out, inputs)

    def _core_input(self, stoch: jax.Array, action: jax.Array) -> jax.Array:
        stoch = stoch.reshape(stoch.shape[:-2] + (-1,))
        if self.dynamics_input == "split":
            return jnp.concatenate([self.stoch_input_net(stoch), self.action_input_net(action)], -1)
        return self.input_net(jnp.concatenate([stoch, action], -1))

    def img_step(self, state: RSSMState, action: jax.Array, key: jax.Array) -> tuple[RSSMState, jax.Array]:
        """Imagine one step with ``action [B, A]``; returns the new state and its prior logits."""
        no_reset = jnp.zeros(action.shape[:1], bool)
        carry, deter = self.core.step(state.carry, self._core_input(state.stoch, action), no_reset)
        logits = self.prior_logits(deter)
        stoch = OneHotCategorical(logits).sample(key)
        return RSSMState(carry, deter, stoch), logits

    def obs_step(
        self,
        state: RSSMState,
        prev_action: jax.Array,
        embed: jax.Array,
        is_first: jax.Array,
        key: jax.Array,
    ) -> tuple[RSSMState, tuple[jax.Array, jax.Array]]:
        """Filter one observation: ``prev_action [B, A]``, ``embed [B, E]``, ``is_first [B]``.

        Returns the posterior state and ``(posterior_logits, prior_logits)``.
        """
        state, posterior = self._posterior_step(state, prev_action, embed, is_first, key)
        return state, (posterior, self.prior_logits(state.deter))

    def _posterior_step(self, state: RSSMState, prev_action: jax.Array, embed: jax.Array, is_first: jax.Array,
                        key: jax.Array) -> tuple[RSSMState, jax.Array]:
        """``obs_step`` without the prior, which needs nothing from the next step: a sequence's priors
        run afterwards on all ``[T, B]`` states at once, outside the scan (one large matmul forward
        and backward instead of T small ones)."""
        stoch = _mask(is_first, state.stoch)
        prev_action = _mask(is_first, prev_action)
        carry, deter = self.core.step(state.carry, self._core_input(stoch, prev_action), is_first)
        posterior = self.posterior_logits(deter, embed)
        stoch = OneHotCategorical(posterior).sample(key)
        return RSSMState(carry, deter, stoch), posterior

    def observe(
        self,
        state: RSSMState,
        prev_actions: jax.Array,
        embeds: jax.Array,
        is_first: jax.Array,
        key: jax.Array,
    ) -> tuple[RSSMState, RSSMState, jax.Array, jax.Array]:
        """Filter a sequence: ``prev_actions [T, B, A]``, ``embeds [T, B, E]``, ``is_first [T, B]``.

        Returns ``(last_state, states, posterior_logits, prior_logits)``; ``states`` holds
        ``deter [T, B, D]`` and ``stoch [T, B, S, K]`` and per-step carries ``[T, B, ...]``.
        """
        if self.posterior == "state":
            return self._observe_stepwise(state, prev_actions, embeds, is_first, key)
        return self._observe_parallel(state, prev_actions, embeds, is_first, key)

    def _observe_stepwise(self, state, prev_actions, embeds, is_first, key):
        keys = jax.random.split(key, embeds.shape[0])
        if self.is_initializing():  # create every parameter before the scan traces obs_step
            self.obs_step(state, prev_actions[0], embeds[0], is_first[0], keys[0])

        def body(rssm, state, inputs):
            state, posterior = rssm._posterior_step(state, *inputs)
            return state, (state, posterior)

        # nn.scan, not lax.scan, so that what the core sows at each step (EGRU's activity) comes out
        # stacked over time instead of leaking from the loop
        scan = nn.scan(body, variable_broadcast="params", variable_axes={"intermediates": 0},
                       split_rngs={"params": False})
        last, (states, posterior) = scan(self, state, (prev_actions, embeds, is_first, keys))
        return last, states, posterior, self.prior_logits(states.deter)

    def _observe_parallel(self, state, prev_actions, embeds, is_first, key):
        dummy_deter = jnp.zeros(embeds.shape[:-1] + (self.deter,))
        posterior = self.posterior_logits(dummy_deter, embeds)
        stoch = OneHotCategorical(posterior).sample(key)
        prev_stoch = _mask(is_first, jnp.concatenate([state.stoch[None], stoch[:-1]], 0))
        inputs = self._core_input(prev_stoch, _mask(is_first, prev_actions))
        carries, deter = self.core.scan(state.carry, inputs, is_first, return_carries=True)
        states = RSSMState(carries, deter, stoch)
        last = jax.tree.map(lambda leaf: leaf[-1], states)
        return last, states, posterior, self.prior_logits(deter)

    def __call__(self, state, prev_actions, embeds, is_first, key):
        return self.observe(state, prev_actions, embeds, is_first, key)
