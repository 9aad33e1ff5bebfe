"""An actor-critic trained in the imagination of a world model (DreamerV3-style).

Reused at every level of the hierarchy: the caller supplies a ``rollout`` that imagines a
trajectory under a given policy and says what the reward is (task reward, goal reward, novelty ...).
Arrays are time-major: ``[H + 1, N, F]`` features of imagined states, ``[H, N, K]`` rewards of ``K``
reward *terms*. Each term has its own value head and its own return normalisation, so that a small
intrinsic term is neither drowned by a large task return nor blown up to its size; the actor follows
the weighted sum of the normalised advantages (as Director does with its extrinsic and exploration
critics).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from agents.optimization import GradientStep, TrainState, apply_gradients, gradient_step, make_optimizer
from agents.returns import (
    ReturnScale,
    discounted_sum,
    lambda_returns,
    replayed_lambda_returns,
    return_divisor,
    update_return_scale,
)
from world_models.distributions import (
    BoundedNormal,
    GroupedOneHot,
    OneHotCategorical,
    TwoHotSymlog,
    symlog_bins,
    unimix_logits,
)
from world_models.nets import MLP

ACTOR_GRADS = ("auto", "reinforce", "dynamics")  # agent.actor_grad; auto: reinforce if discrete, else dynamics


def weighted_correlation(a: jax.Array, b: jax.Array, weights: jax.Array) -> jax.Array:
    """Pearson's correlation of ``a [N]`` and ``b [N]`` with each pair counted by ``weights [N]``; 0
    where either does not vary, so that a metric stays finite (a run stops on non-finite metrics)."""
    weights = weights / jnp.maximum(jnp.sum(weights), 1e-8)
    a_centred, b_centred = a - jnp.sum(weights * a), b - jnp.sum(weights * b)
    covariance = jnp.sum(weights * a_centred * b_centred)
    variance = jnp.sum(weights * a_centred**2) * jnp.sum(weights * b_centred**2)
    return jnp.where(variance > 0, covariance / jnp.sqrt(jnp.where(variance > 0, variance, 1.0)), 0.0)


class Trajectory(NamedTuple):
    """An imagined trajectory of H steps from N start states."""

    features: jax.Array  # [H + 1, N, F]: states s_0 .. s_H as seen by actor and critic
    actions: jax.Array  # [H, N, A]: a_i taken in s_i
    rewards: jax.Array  # [H, N, K]: reward of each term for the step s_i -> s_{i+1}
    continues: jax.Array  # [H, N]: probability that the episode goes on in s_{i+1}
    start_continue: jax.Array  # [N]: 0 where the start state is already terminal


Policy = Callable[[jax.Array, jax.Array], jax.Array]
Rollout = Callable[[Policy, jax.Array], Trajectory]


class Replayed(NamedTuple):
    """Replayed sequences ``[T, B]`` whose states imagination starts from (``T * B`` starts, time
    major), for the critic's replayed value loss: real rewards of the first reward term."""

    features: jax.Array  # [T, B, F]: what the critic sees of each posterior state
    rewards: jax.Array  # [T, B]: reward of the step into each state
    terminal: jax.Array  # [T, B]
    first: jax.Array  # [T, B]
    weights: jax.Array  # [T, B]: 1 where a state counts (a level's mask)


class Targets(NamedTuple):
    """What the actor and the critic learn from on one imagined trajectory."""

    returns: jax.Array  # [H, N, K]: λ-returns of every reward term
    values: jax.Array  # [H + 1, N, K]: the critic's values they bootstrap from
    weights: jax.Array  # [H, N]: discounted probability that s_i is still in the episode
    return_scale: ReturnScale  # updated with these returns
    divisor: jax.Array  # [K]: the return normalisation's scale of each term


class PolicyJudgement(NamedTuple):
    """What a critic and the world model of a rollout expect of a policy, per imagination start ``[N]``
    (``ActorCritic.judge``)."""

    objective: jax.Array  # the actor's objective without its entropy bonus: normalised λ-returns,
    #                       weighted by the discounted continuation, averaged over the horizon
    start_return: jax.Array  # λ-return of the first reward term from the start state
    reward_sum: jax.Array  # discounted sum of the first term's imagined rewards over the horizon
    horizon_value: jax.Array  # the critic's value of the first term at the horizon's end
    start_value: jax.Array  # the critic's value of the first term at the start (whatever the policy)
    weight: jax.Array  # 0 where the start does not count (``Trajectory.start_continue``)


class ActorNet(nn.Module):
    units: int
    layers: int
    outputs: int

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        hidden = MLP(self.units, self.layers)(features)
        return nn.Dense(self.outputs, kernel_init=nn.initializers.variance_scaling(0.01, "fan_in", "uniform"))(hidden)


class CriticNet(nn.Module):
    """One trunk, one ``bins``-way head per reward term: ``[..., terms, bins]`` logits."""

    units: int
    layers: int
    bins: int
    terms: int = 1

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        hidden = MLP(self.units, self.layers)(features)
        logits = nn.Dense(self.terms * self.bins, kernel_init=nn.initializers.zeros)(hidden)
        return logits.reshape(logits.shape[:-1] + (self.terms, self.bins))


@struct.dataclass
class ActorCriticState:
    actor: TrainState
    critic: TrainState
    slow_critic: Any  # parameters: a slowly moving copy of the critic's
    return_scale: ReturnScale  # per reward term: low, high [K]


class ActorCritic:
    """Policy and value of one level.

    Args:
      action_dim: size of the action vector; ``discrete``: one-hot categorical actions, otherwise a
        bounded normal over ``[-1, 1]^action_dim``.
      action_groups: discrete actions made of this many independent one-hot parts of
        ``action_dim // action_groups`` classes each (the hierarchy's goal codes); 1 otherwise.
      horizon: imagination steps; discount, lambda_: return parameters.
      entropy: weight of the policy entropy bonus.
      actor_grad: ``reinforce``, ``dynamics`` (backpropagate returns through the world model) or
        ``auto`` (reinforce for discrete, dynamics for continuous actions).
      slow_critic_fraction: EMA rate of the slow critic; slow_critic_reg: pull towards it.
      return_norm_decay, return_norm_percentiles: running percentile normalisation of returns.
      actor_lr, critic_lr, eps, grad_clip: their optimisers (``agents.optimization``).
      reward_terms: ``(name, weight)`` of each reward term, in the order of the rollout's reward
        axis: each gets a value head and a return normalisation, the actor their weighted advantages.
      replay_value: weight of the replayed value loss (DreamerV3's, 0.3 there): the first term's value
        head also learns the λ-returns of real rewards along the replayed sequences (``Replayed``),
        bootstrapped from each state's imagined return, so that values reach long horizons sooner;
        0: off.
    The values come from the ``agent`` config section (``configs.sections.ActorCriticConfig``).
    """

    def __init__(self, action_dim: int, discrete: bool, horizon: int, discount: float, lambda_: float,
                 entropy: float, units: int, layers: int, bins: int, unimix: float, actor_grad: str, min_std: float,
                 max_std: float, slow_critic_fraction: float, slow_critic_reg: float, return_norm_decay: float,
                 return_norm_percentiles: tuple[float, float], actor_lr: float, critic_lr: float, eps: float,
                 grad_clip: float, action_groups: int = 1,
                 reward_terms: tuple[tuple[str, float], ...] = (("task", 1.0),), replay_value: float = 0.0):
        if action_dim % action_groups:
            raise ValueError(f"action_dim {action_dim} does not split into {action_groups} groups")
        self.action_groups = action_groups
        if actor_grad == "auto":
            actor_grad = "reinforce" if discrete else "dynamics"
        if actor_grad not in ACTOR_GRADS:  # auto is resolved above
            raise ValueError(f"actor_grad must be one of {ACTOR_GRADS}, got {actor_grad!r}")
        self.action_dim, self.discrete, self.actor_grad = action_dim, discrete, actor_grad
        self.horizon, self.discount, self.lambda_, self.entropy = horizon, discount, lambda_, entropy
        self.unimix, self.min_std, self.max_std = unimix, min_std, max_std
        self.slow_critic_fraction, self.slow_critic_reg = slow_critic_fraction, slow_critic_reg
        self.return_norm_decay = return_norm_decay
        self.replay_value = replay_value
        self.return_norm_percentiles = tuple(return_norm_percentiles)
        self.actor_net = ActorNet(units, layers, action_dim if discrete else 2 * action_dim)
        if not reward_terms:
            raise ValueError("an actor-critic needs at least one reward term")
        self.term_names = tuple(name for name, _ in reward_terms)
        self.term_weights = jnp.array([weight for _, weight in reward_terms], jnp.float32)
        self.critic_net = CriticNet(units, layers, bins, len(reward_terms))
        self.bins = symlog_bins(bins)
        self.actor_lr = actor_lr
        self.actor_optimizer = make_optimizer(actor_lr, grad_clip, eps)
        self.critic_optimizer = make_optimizer(critic_lr, grad_clip, eps)

    def init(self, key: jax.Array, feature_dim: int) -> ActorCriticState:
        actor_key, critic_key = jax.random.split(key)
        features = jnp.zeros((1, feature_dim))
        actor = self.actor_net.init(actor_key, features)["params"]
        critic = self.critic_net.init(critic_key, features)["params"]
        return ActorCriticState(
            actor=TrainState.create(self.actor_optimizer, actor),
            critic=TrainState.create(self.critic_optimizer, critic),
            slow_critic=jax.tree.map(jnp.copy, critic),  # own buffers: the train step donates both
            return_scale=ReturnScale.initial(len(self.term_names)),
        )

    def policy(self, actor_params, features: jax.Array) -> OneHotCategorical | GroupedOneHot | BoundedNormal:
        outputs = self.actor_net.apply({"params": actor_params}, features)
        if self.discrete and self.action_groups > 1:
            grouped = outputs.reshape(outputs.shape[:-1] + (self.action_groups, -1))
            return GroupedOneHot(unimix_logits(grouped, self.unimix))
        if self.discrete:
            return OneHotCategorical(unimix_logits(outputs, self.unimix))
        return BoundedNormal.from_outputs(outputs, self.min_std, self.max_std)

    def act(self, actor_params, features: jax.Array, key: jax.Array, greedy: bool = False) -> jax.Array:
        """An action ``[N, A]`` for acting in the environment (no gradients)."""
        dist = self.policy(actor_params, features)
        return jax.lax.stop_gradient(dist.mode() if greedy else dist.sample(key))

    def value(self, critic_params, features: jax.Array) -> jax.Array:
        """The value of each reward term: ``[..., K]``."""
        return self.value_dist(critic_params, features).mean()

    def value_dist(self, critic_params, features: jax.Array) -> TwoHotSymlog:
        return TwoHotSymlog(self.critic_net.apply({"params": critic_params}, features), self.bins)

    def update(
        self, state: ActorCriticState, rollout: Rollout, key: jax.Array, replayed: Replayed | None = None
    ) -> tuple[ActorCriticState, dict[str, jax.Array], Trajectory]:
        """One actor and one critic step on a freshly imagined trajectory (and, with ``replay_value``,
        on the ``replayed`` sequences its starts come from)."""
        if self.actor_grad == "reinforce":
            # the trajectory does not depend on the actor's parameters here, so the critic's forward pass
            # over it serves both the returns' values and the critic's own gradient
            trajectory = jax.tree.map(jax.lax.stop_gradient, rollout(self._imagining_policy(state.actor.params), key))
            logits, critic_pullback = self._critic_forward(state.critic.params, trajectory.features[:-1])
            values = jnp.concatenate([TwoHotSymlog(logits, self.bins).mean(),
                                      self.value(state.critic.params, trajectory.features[-1:])])
            targets = self._targets(state, trajectory, values)
            actor = gradient_step(self._reinforce_loss, self.actor_optimizer, state.actor, trajectory, targets)
        else:
            actor = gradient_step(self._dynamics_loss, self.actor_optimizer, state.actor, state, rollout, key)
            trajectory, targets = actor.aux[:2]
            logits, critic_pullback = self._critic_forward(state.critic.params, trajectory.features[:-1])
        replay = () if replayed is None or not self.replay_value else self._replayed_targets(replayed, targets.returns)
        critic = self._critic_step(state, trajectory.features[:-1], logits, critic_pullback, targets, replay)
        slow_critic = optax.incremental_update(critic.state.params, state.slow_critic, self.slow_critic_fraction)
        metrics = {
            **actor.aux[-1],
            **self._term_metrics(trajectory, targets),
            "actor_critic/critic_loss": critic.loss,
            "actor_critic/actor_grad_norm": actor.grad_norm,
            "actor_critic/critic_grad_norm": critic.grad_norm,
            **critic.aux,
        }
        new_state = ActorCriticState(actor.state, critic.state, slow_critic, targets.return_scale)
        return new_state, metrics, trajectory

    def _replayed_targets(self, replayed: Replayed, returns: jax.Array) -> tuple[jax.Array, ...]:
        """The critic's replayed inputs: features ``[T - 1, B, F]``, λ-returns of the first term and
        weights, bootstrapped from the imagined return of each start (``returns [H, T * B, K]``)."""
        boot = returns[0, :, 0].reshape(replayed.rewards.shape)
        targets, same_episode = replayed_lambda_returns(replayed.rewards, replayed.terminal, replayed.first, boot,
                                                        self.discount, self.lambda_)
        return replayed.features[:-1], targets, same_episode * replayed.weights[:-1]

    def _imagining_policy(self, actor_params) -> Policy:
        """The policy the rollout samples from; under REINFORCE, no gradient flows through its
        inputs or its samples."""
        stop = jax.lax.stop_gradient
        reinforce = self.actor_grad == "reinforce"

        def policy(features, policy_key):
            action = self.policy(actor_params, stop(features) if reinforce else features).sample(policy_key)
            return stop(action) if reinforce else action

        return policy

    def _targets(self, state: ActorCriticState, trajectory: Trajectory, values: jax.Array) -> Targets:
        """λ-returns of every term from the values ``[H + 1, N, K]``, the states' weights (discounted
        continuation) and the updated return normalisation."""
        discounts = self.discount * trajectory.continues
        returns = lambda_returns(trajectory.rewards, jnp.broadcast_to(discounts[..., None], trajectory.rewards.shape),
                                 values, self.lambda_)
        weights = jax.lax.stop_gradient(
            jnp.cumprod(jnp.concatenate([trajectory.start_continue[None], discounts[:-1]]), 0)
        )
        return_scale, divisor = update_return_scale(
            state.return_scale, jax.lax.stop_gradient(returns), self.return_norm_decay, self.return_norm_percentiles
        )
        return Targets(returns, values, weights, return_scale, divisor)

    def _reinforce_loss(self, actor_params, trajectory: Trajectory, targets: Targets):
        """Log-probability of the imagined actions times their normalised advantage, plus entropy."""
        dist = self.policy(actor_params, trajectory.features[:-1])
        advantage = jnp.sum(self.term_weights * (targets.returns - targets.values[:-1]) / targets.divisor, -1)
        return self._policy_loss(dist, dist.log_prob(trajectory.actions) * advantage, targets.weights)

    def _dynamics_loss(self, actor_params, state: ActorCriticState, rollout: Rollout, key: jax.Array):
        """The normalised returns themselves, differentiated through the world model, plus entropy;
        also returns the (stopped) trajectory and targets."""
        stop = jax.lax.stop_gradient
        trajectory = rollout(self._imagining_policy(actor_params), key)
        targets = self._targets(state, trajectory, self.value(state.critic.params, trajectory.features))
        dist = self.policy(actor_params, stop(trajectory.features[:-1]))
        objective = jnp.sum(self.term_weights * targets.returns / targets.divisor, -1)
        loss, (metrics,) = self._policy_loss(dist, objective, targets.weights)
        return loss, (stop(trajectory), stop(targets), metrics)

    def judge(self, state: ActorCriticState, actor_params, rollout: Rollout, key: jax.Array) -> PolicyJudgement:
        """What this actor-critic (``state``: its critic and return scale) and the rollout's world model
        expect of the policy ``actor_params``, which may be another checkpoint's: the objective its
        actor would follow, divided by ``state``'s return scale as it stands (not moved by this batch),
        so that two policies judged with one key compare on the same imagined starts."""
        trajectory = rollout(self._imagining_policy(actor_params), key)
        values = self.value(state.critic.params, trajectory.features)
        targets = self._targets(state, trajectory, values)
        normalised = jnp.sum(self.term_weights * targets.returns / return_divisor(state.return_scale), -1)
        return PolicyJudgement(
            objective=jnp.mean(targets.weights * normalised, 0),
            start_return=targets.returns[0, :, 0],
            reward_sum=discounted_sum(trajectory.rewards[..., 0], trajectory.continues, self.discount),
            horizon_value=values[-1, :, 0],
            start_value=values[0, :, 0],
            weight=trajectory.start_continue,
        )

    def _policy_loss(self, dist, objective: jax.Array, weights: jax.Array):
        entropy = dist.entropy()
        loss = -jnp.mean(weights * (objective + self.entropy * entropy))
        metrics = {"actor_critic/actor_loss": loss, "actor_critic/entropy": entropy.mean()}
        if self.discrete:
            # near 1 the policy still samples (almost) uniformly: a top level at 1 does not steer its
            # training episodes, whatever its greedy action prefers
            metrics["actor_critic/entropy_fraction"] = entropy.mean() / dist.max_entropy()
        return loss, (metrics,)

    def _term_metrics(self, trajectory: Trajectory, targets: Targets) -> dict[str, jax.Array]:
        """Imagined return, reward, value and return scale of each reward term (the first term's under
        the plain names), and ``value_reward_corr``: the correlation over the imagination starts between
        the critic's value of each start and the reward imagined from it over the horizon (discounted).
        Near 0 the critic does not rank states as the model's rewards do, and an actor that follows its
        values at the horizon follows noise (the Pendulum camera runs' critics were that flat before
        their policies collapsed)."""
        metrics = {}
        for index, name in enumerate(self.term_names):
            suffix = "" if index == 0 else f"/{name}"
            reward_sum = discounted_sum(trajectory.rewards[..., index], trajectory.continues, self.discount)
            metrics[f"actor_critic/imagined_return{suffix}"] = targets.returns[0, :, index].mean()
            metrics[f"actor_critic/imagined_reward{suffix}"] = trajectory.rewards[..., index].mean()
            metrics[f"actor_critic/value{suffix}"] = targets.values[..., index].mean()
            metrics[f"actor_critic/return_scale{suffix}"] = targets.divisor[index]
            metrics[f"actor_critic/value_reward_corr{suffix}"] = weighted_correlation(
                targets.values[0, :, index], reward_sum, trajectory.start_continue)
        return metrics

    def _critic_forward(self, critic_params, features: jax.Array) -> tuple[jax.Array, Callable]:
        """The critic's logits ``[..., K, bins]`` and the pull-back of their cotangent to its parameters."""
        return jax.vjp(lambda params: self.critic_net.apply({"params": params}, features), critic_params)

    def _critic_step(self, state: ActorCriticState, features: jax.Array, logits: jax.Array, pullback: Callable,
                     targets: Targets, replayed: tuple[jax.Array, ...]) -> GradientStep:
        """One critic step: the two-hot loss of every term's head on the imagined ``targets`` (from its
        ``logits`` on ``features [H, N, F]``, already computed) plus, with ``replayed``
        (``_replayed_targets``), ``replay_value`` times the first head's loss on the replayed λ-returns."""
        slow_values = self.value(state.slow_critic, features)

        def imagined_loss(logits):
            loss = self._value_loss(TwoHotSymlog(logits, self.bins), slow_values, targets.returns)  # [H, N, K]
            return jnp.mean(targets.weights * jnp.sum(loss, -1))

        loss, logits_grad = jax.value_and_grad(imagined_loss)(logits)
        (grads,) = pullback(logits_grad)
        aux = {}
        if replayed:
            replay_loss, replay_grads = jax.value_and_grad(self._replay_value_loss)(
                state.critic.params, state.slow_critic, *replayed)
            loss = loss + self.replay_value * replay_loss
            grads = jax.tree.map(lambda imagined, replay: imagined + self.replay_value * replay, grads, replay_grads)
            aux["actor_critic/replay_value_loss"] = replay_loss
        params, opt_state = apply_gradients(self.critic_optimizer, grads, state.critic.params, state.critic.opt_state)
        return GradientStep(TrainState(params, opt_state), loss, aux, grads)

    def _replay_value_loss(self, critic_params, slow_critic_params, features, targets, weights) -> jax.Array:
        """The first head's loss on the replayed λ-returns ``targets [T - 1, B]``."""
        dist = self.value_dist(critic_params, features)
        head = TwoHotSymlog(dist.logits[..., :1, :], dist.bins)
        slow_values = self.value(slow_critic_params, features)[..., :1]
        return jnp.mean(weights * self._value_loss(head, slow_values, targets[..., None])[..., 0])

    def _value_loss(self, dist: TwoHotSymlog, slow_values: jax.Array, returns: jax.Array) -> jax.Array:
        """Two-hot loss of the value heads against ``returns``, plus the pull towards the slow critic."""
        return -dist.log_prob(returns) - self.slow_critic_reg * dist.log_prob(slow_values)
