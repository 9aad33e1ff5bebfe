"""One level of the hierarchy: its world model, actor-critic and auxiliaries, and what they mean together.

Level 0 models the environment and acts in its action space; level l > 0 models level l-1 once per
``K_l`` of its steps (``world_models.hierarchy``) and acts in a goal space (``agents.goals``). Every
level below the top is handed a goal ``[..., G_l]`` by the level above: a target for its *goal
features*, the first ``G_l`` entries of its latent features (its deterministic state with
``goal.features: deter``, everything with ``full``).

Rewards come in named terms, each with its own critic and return scale (``agents.actor_critic``):
below the top ``goal`` (similarity to the goal) and, if weighted, ``task``; at the top ``task`` and, if
weighted, ``novelty`` (how badly an autoencoder of goal features reconstructs the state the level
imagines reaching: high in places the agent has rarely been). What one level does on its own lives
here, once: its policy input (features joined with the goal), its reward, its updates, and how its
abstract actions become goals of the level below; its auxiliaries learn in ``agents.auxiliaries``.
The agent (``agents.hierarchical_agent``) is the loop over levels, ``agents.hierarchical_policy``
the acting clock.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from agents.actor_critic import ActorCritic, ActorCriticState, Replayed, Rollout, Trajectory
from agents.auxiliaries import init_auxiliaries, update_auxiliaries
from agents.controllability import model_controllability
from agents.goals import Ensemble, GoalAutoencoder, NoveltyPredictor, goal_diversity, goal_similarity
from agents.optimization import TrainState, gradient_step, masked_mean
from world_models import hierarchy as stack
from world_models.distributions import symexp
from world_models.hierarchy import FEATURES
from world_models.rssm import RSSMState, state_features
from world_models.world_model import WorldModel


@struct.dataclass
class LevelState:
    world_model: TrainState  # empty for a top that imagines through the level below
    actor_critic: ActorCriticState
    auxiliary: dict[str, TrainState]  # {"goal_autoencoder" | "novelty_autoencoder" | "ensemble": ...}, where used


def level_key(key: jax.Array, level: int) -> jax.Array:
    """Level 0 uses ``key`` itself (so that one level reproduces the flat agent), level l a fold."""
    return key if level == 0 else jax.random.fold_in(key, level)


def goal_view(features: jax.Array, size: int) -> jax.Array:
    """The goal features of a level's latent features ``[..., F]``: their first ``size`` entries
    (``state_features`` puts the deterministic state first)."""
    return features[..., :size]


def flatten_time(leaf: jax.Array) -> jax.Array:
    """``[T, B, ...] -> [T * B, ...]``, without gradient: imagination starts from every state."""
    return jax.lax.stop_gradient(leaf.reshape((-1,) + leaf.shape[2:]))


# goal.terminal: what a level below the top is paid for reaching its goal in a terminal state
TERMINAL_GOAL_REWARDS = ("once", "held")


class Level:
    """One level with a world model of its own (see ``agents.imagined_top`` for a top without one).

    Args:
    index: the level's position, 0 at the environment; top: whether no level sits above it.
    world_model, actor_critic: its parts (no world model: ``agents.imagined_top``); its actor-critic sees
      ``policy_input``.
    period: environment steps per step of this level; sequence_length: of its training sequences.
    goal_size: size of its goal features (``goal_view``); lower_goal_size: that of the level below
      (0 at level 0).
    goal_reward_scale, task_reward_scale: weights of a level below the top's reward terms (a zero
      task weight drops the term); novelty_scale: weight of the top's novelty term (0: none).
    goal_autoencoder: decodes its abstract actions into goals (``goal.space: autoencoder``), or None;
      novelty_autoencoder: where the top needs novelty and has no goal autoencoder, one of the goal
      features it describes (its own at level 0, the level below's above), or None.
    ensemble: measures its model's doubt, or None; disagreement_penalty, exploration_bonus: times
      that doubt, subtracted from / added to its imagined reward (the penalty only once a rewarded
      step has been replayed).
    novelty_predictor: where the novelty term reads a head learned on real states
      (``hierarchy.novelty_reward: predicted``), that head; None: the autoencoder measures it.
    terminal_goal: what a level below the top is paid for a step into a terminal state
      (``goal.terminal``, ``TERMINAL_GOAL_REWARDS``): ``once``, its goal similarity for that step and
      nothing after, or ``held``, that similarity for good, as if it stayed there (``r / (1 - discount)``).
      ``once`` keeps the worker out of terminal states, a rewarded goal among them; ``held`` can draw it into
      a terminal state its goal resembles, which suits episodes that end at success, not at failure.
    """

    imagines_below = False  # True for a top that imagines through the level below (agents.imagined_top)

    def __init__(self, index: int, top: bool, world_model: WorldModel | None, actor_critic: ActorCritic, period: int,
                 sequence_length: int, goal_size: int, lower_goal_size: int, goal_reward_scale: float,
                 task_reward_scale: float, novelty_scale: float, goal_autoencoder: GoalAutoencoder | None,
                 novelty_autoencoder: GoalAutoencoder | None, ensemble: Ensemble | None,
                 disagreement_penalty: float, exploration_bonus: float,
                 novelty_predictor: NoveltyPredictor | None = None, terminal_goal: str = "once"):
        if terminal_goal not in TERMINAL_GOAL_REWARDS:
            raise ValueError(f"goal.terminal must be one of {TERMINAL_GOAL_REWARDS}, got {terminal_goal!r}")
        self.terminal_goal = terminal_goal
        self.index, self.top = index, top
        self.world_model, self.actor_critic = world_model, actor_critic
        self.period, self.sequence_length = period, sequence_length
        self.goal_size, self.lower_goal_size = goal_size, lower_goal_size
        self.goal_reward_scale, self.task_reward_scale = goal_reward_scale, task_reward_scale
        self.novelty_scale = novelty_scale
        self.goal_autoencoder, self.ensemble = goal_autoencoder, ensemble
        self.disagreement_penalty, self.exploration_bonus = disagreement_penalty, exploration_bonus
        auxiliaries = {"goal_autoencoder": goal_autoencoder, "novelty_autoencoder": novelty_autoencoder,
                       "ensemble": ensemble, "novelty_predictor": novelty_predictor}
        self.auxiliaries = {name: part for name, part in auxiliaries.items() if part is not None}
        self.novelty_source = "goal_autoencoder" if goal_autoencoder is not None else "novelty_autoencoder"
        if novelty_scale > 0 and self.novelty_source not in self.auxiliaries:
            raise ValueError(f"level {index} weights novelty but has no autoencoder to measure it with")

    @staticmethod
    def reward_terms(top: bool, goal_reward_scale: float, task_reward_scale: float, novelty_scale: float
                     ) -> tuple[tuple[str, float], ...]:
        """``(name, weight)`` of a level's reward terms, in the order ``reward`` returns them (then novelty)."""
        if top:
            return (("task", 1.0),) + ((("novelty", novelty_scale),) if novelty_scale > 0 else ())
        return (("goal", goal_reward_scale),) + ((("task", task_reward_scale),) if task_reward_scale > 0 else ())

    @property
    def policy_input_dim(self) -> int:
        features = self.world_model.feature_dim
        return features if self.top else features + self.goal_size

    def init(self, world_model_key: jax.Array, actor_critic_key: jax.Array) -> LevelState:
        """Parameters and optimiser states, from the agent's (unfolded) keys."""
        params = self.world_model.init(level_key(world_model_key, self.index))
        return LevelState(
            world_model=TrainState.create(self.world_model.optimizer, params),
            actor_critic=self.actor_critic.init(level_key(actor_critic_key, self.index), self.policy_input_dim),
            auxiliary=init_auxiliaries(self.auxiliaries, world_model_key, self.index),
        )

    # ------------------------------------------------------------------------------ what it means
    def policy_input(self, features: jax.Array, goal: jax.Array | None) -> jax.Array:
        """What actor and critic see: ``features [..., F]`` joined with the goal ``[..., G]`` from
        above (broadcast over the leading axes of ``features``); the top level sees its features."""
        if goal is None:
            return features
        return jnp.concatenate([features, jnp.broadcast_to(goal, features.shape[:-1] + goal.shape[-1:])], -1)

    def reward(self, features: jax.Array, goal: jax.Array | None, task: jax.Array,
               continues: jax.Array | None = None) -> jax.Array:
        """The reward terms ``[..., K]`` of arriving in ``features`` with task reward ``task`` that reality
        can measure too (all but novelty): ``task`` at the top; below it ``goal`` (similarity of the goal
        features to the goal) and, if weighted, ``task``. ``continues [...]``: whether the episode goes
        on in ``features``, for ``terminal_goal: held`` (None: it goes on)."""
        if self.top:
            return task[..., None]
        similarity = goal_similarity(goal_view(features, self.goal_size), goal)
        if self.terminal_goal == "held" and continues is not None:
            # A terminal state ends imagination, so a goal reached there would pay one step where a goal
            # beside it pays every step: the worker would hover next to a rewarded terminal state. Held,
            # it pays what staying there for good would. Only where the model calls the state terminal:
            # weighting by the soft continue probability would scale every state's similarity by the
            # continue head's doubt (0.01 of doubt x 1 / (1 - 0.985) = +0.67), a larger effect than the
            # few hundredths by which the similarity tells near from far, and the worker stopped
            # reaching its goals (reach rate 0.3-0.4 to 0 on the four-rooms grid).
            terminal = continues < 0.5
            similarity = jnp.where(terminal, similarity / (1.0 - self.actor_critic.discount), similarity)
        terms = [similarity]
        if self.task_reward_scale > 0:
            terms.append(task)
        return jnp.stack(terms, -1)

    def weighted_reward(self, features: jax.Array, goal: jax.Array | None, task: jax.Array,
                        continues: jax.Array | None = None) -> jax.Array:
        """The weighted sum of ``reward``'s terms ``[...]``: what the level is paid, for diagnostics."""
        weights = self.actor_critic.term_weights[: 1 if self.top else None]
        return jnp.sum(self.reward(features, goal, task, continues) * weights, -1)

    def novelty(self, state: LevelState, features: jax.Array) -> jax.Array:
        """The novelty term of this level's states ``features [..., F]``: the novelty predictor's
        estimate where the level has one, else ``measured_novelty``."""
        if "novelty_predictor" in self.auxiliaries:
            return self.auxiliaries["novelty_predictor"].predict(state.auxiliary["novelty_predictor"].params, features)
        return self.measured_novelty(state, features)

    def measured_novelty(self, state: LevelState, features: jax.Array) -> jax.Array:
        """The reconstruction error of the goal features of ``features [..., F]`` (at level 0 its own,
        above the level below's as this level's model decodes them)."""
        autoencoder = self.auxiliaries[self.novelty_source]
        if self.index == 0:
            described = goal_view(features, self.goal_size)
        else:
            decoded = symexp(self.world_model.decode(state.world_model.params, features)[FEATURES])
            described = goal_view(decoded, self.lower_goal_size)
        return autoencoder.novelty(state.auxiliary[self.novelty_source].params, described)

    def replayed_novelty(self, state: LevelState, starts: RSSMState, weights: jax.Array) -> dict[str, jax.Array]:
        """``actor_critic/replayed_reward/novelty``: the mean novelty of the replayed states that
        imagination starts from (leaves ``[N, ...]``, ``weights [N]``), beside
        ``actor_critic/imagined_reward/novelty``. Imagined states far more novel than replayed ones are
        places the level has not been, or that its model invents; empty without a novelty term."""
        if self.novelty_scale <= 0:
            return {}
        novelty = self.novelty(state, state_features(starts))
        return {"actor_critic/replayed_reward/novelty": jax.lax.stop_gradient(masked_mean(novelty, weights))}

    def value_before_reward(self, state: LevelState, posterior: RSSMState, book: dict) -> dict[str, jax.Array]:
        """The top's ``actor_critic/value_before_reward``: its critic's task value at the replayed
        states one step before a rewarded one (``posterior`` leaves ``[T, B, ...]``, ``book``'s reward,
        ``is_first`` and mask), beside the reward paid there (``actor_critic/reward_after``). A model
        whose reward head fires at the goal while this stays near 0 has a critic and actor that have
        not learned to go there. Weighted means over those steps (``agents.metrics_window``)."""
        features = jax.lax.stop_gradient(state_features(posterior))
        values = self.actor_critic.value(state.actor_critic.critic.params, self.policy_input(features, None))[..., 0]
        before = (book["reward"][1:] != 0) & ~book["is_first"][1:]  # the step after, in the same episode
        weights = before * book["mask"][1:]
        count = jnp.sum(weights)
        mean = lambda values: jnp.sum(values * weights) / jnp.maximum(count, 1.0)
        return {"actor_critic/value_before_reward": mean(values[:-1]), "actor_critic/value_before_reward#weight": count,
                "actor_critic/reward_after": mean(book["reward"][1:]), "actor_critic/reward_after#weight": count}

    def act(self, state: LevelState, features: jax.Array, goal: jax.Array | None, key: jax.Array,
            greedy: bool = False) -> jax.Array:
        return self.actor_critic.act(state.actor_critic.actor.params, self.policy_input(features, goal), key, greedy)

    def random_action(self, key: jax.Array, batch: int) -> jax.Array:
        """Uniformly random actions ``[batch, A]`` of this level: one-hot codes per group, or ``[-1, 1]``."""
        ac = self.actor_critic
        if ac.discrete:
            classes = ac.action_dim // ac.action_groups
            index = jax.random.randint(key, (batch, ac.action_groups), 0, classes)
            return jax.nn.one_hot(index, classes).reshape(batch, -1)
        return jax.random.uniform(key, (batch, ac.action_dim), minval=-1.0, maxval=1.0)

    def decode_goal(self, state: LevelState, latent: RSSMState, action: jax.Array, key: jax.Array) -> jax.Array:
        """The goal ``[..., G_{l-1}]`` that this level's abstract ``action`` asks of the level below."""
        if self.goal_autoencoder is not None:
            return self.goal_autoencoder.decode(state.auxiliary["goal_autoencoder"].params, action)
        lead = action.shape[:-1]
        flat_latent = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[len(lead):]), latent)
        params = state.world_model.params
        following = self.world_model.img_step(params, flat_latent, action.reshape(-1, action.shape[-1]), key)
        decoded = goal_view(symexp(self.world_model.decode(params, state_features(following))[FEATURES]),
                            self.lower_goal_size)
        return decoded.reshape(lead + decoded.shape[-1:])

    # ------------------------------------------------------------------------------ training
    def update_world_model(self, state: LevelState, batch: dict, described: tuple[jax.Array, jax.Array] | None,
                           key: jax.Array) -> tuple[LevelState, dict[str, jax.Array], RSSMState]:
        """One step of the world model and its auxiliaries on this level's batch ``[T, B, ...]``;
        ``described``: the level below's latent features ``[T', B, F]`` and mask ``[T', B]`` (every
        state the goal autoencoder learns; None at level 0). Returns the posterior states for the
        level above and for imagination."""
        step = gradient_step(self.world_model.loss, self.world_model.optimizer, state.world_model, batch, key)
        metrics, posterior = step.aux
        metrics["world_model/grad_norm"] = step.grad_norm
        state = state.replace(world_model=step.state)
        if described is None:  # level 0's autoencoder describes its own states
            described = (jax.lax.stop_gradient(state_features(posterior)), jnp.ones(batch["is_first"].shape))
        state, auxiliary_metrics = self._update_auxiliaries(state, batch, posterior, described, key)
        metrics.update(auxiliary_metrics)
        error, r2 = self.world_model.open_loop(
            state.world_model.params, batch, jax.lax.stop_gradient(posterior), self.actor_critic.horizon,
            jax.random.fold_in(key, 1_000),
        )
        metrics["model/open_loop_error"] = error.mean()
        metrics[f"model/open_loop_error_step{error.shape[0]}"] = error[-1]
        metrics.update({f"model/open_loop_r2_step{error.shape[0]}/{name}": value for name, value in r2.items()})
        if self.index > 0:  # does its model think its actions matter? (agents.controllability)
            metrics.update(model_controllability(self.world_model, state.world_model.params, posterior,
                                                 self.random_action, jax.random.fold_in(key, 3_000)))
        return state, metrics, posterior

    def _update_auxiliaries(self, state: LevelState, batch: dict, posterior: RSSMState,
                            described: tuple[jax.Array, jax.Array], key: jax.Array
                            ) -> tuple[LevelState, dict[str, jax.Array]]:
        """The auxiliaries' step (``agents.auxiliaries``): the autoencoders learn the goal features of
        the states ``described`` (this level's own at level 0, the level below's above)."""
        goal_size = self.goal_size if self.index == 0 else self.lower_goal_size
        examples = self.novelty_examples(batch, posterior) if "novelty_predictor" in self.auxiliaries else None
        auxiliary, metrics = update_auxiliaries(
            self.auxiliaries, state.auxiliary, batch, posterior, described, goal_size, key, examples)
        return state.replace(auxiliary=auxiliary), metrics

    def novelty_examples(self, batch: dict, posterior: RSSMState | None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """What the novelty predictor learns from: the features this level's novelty term reads on its
        real states ``[T, B, F]``, the goal features of the states they stand for ``[T, B, G]`` (at level 0
        its own; above, the level below's state it observed there, not its model's decoding) and a mask."""
        if self.index == 0:
            own = state_features(posterior)
            return own, goal_view(own, self.goal_size), jnp.ones(own.shape[:-1])
        observed = batch[FEATURES]  # the level below's features at this level's steps
        own = observed if self.imagines_below else state_features(posterior)
        return own, goal_view(observed, self.lower_goal_size), batch["mask"]

    def hand_down_goals(self, state: LevelState, book: dict, posterior: RSSMState, goal: jax.Array | None,
                        governed: jax.Array | None, lower_book: dict, lower_features: jax.Array, key: jax.Array):
        """The goals this level's current policy hands down at each of its steps, spread over the steps
        of the level below that they govern: ``((goals [T_below, B, G], governed [T_below, B]), metrics)``.
        ``goal``/``governed`` are this level's own, from above (None at the top); ``lower_features``
        ``[T_below, B, F]`` the level below's posterior features, to compare the goals' spread with."""
        policy_input = self.policy_input(jax.lax.stop_gradient(state_features(posterior)), goal)
        action_key, decode_key = jax.random.split(key)
        actions = self.actor_critic.act(state.actor_critic.actor.params, policy_input, action_key)
        lower_goals = jax.lax.stop_gradient(
            self.decode_goal(state, jax.lax.stop_gradient(posterior), actions, decode_key))
        own_governed = book["mask"] > 0 if governed is None else governed
        valid = book["tick"] & own_governed
        step = stack.governing_step({"lower_index": book["lower_index"], "tick": valid}, lower_book["mask"].shape[0])
        lower_governed = (step >= 0) & (lower_book["mask"] > 0)
        lower_goal = stack.gather_time(lower_goals, jnp.maximum(step, 0))
        diversity = goal_diversity(lower_goals, valid.astype(jnp.float32))
        replay_spread = goal_diversity(goal_view(lower_features, self.lower_goal_size), lower_book["mask"])
        metrics = {"goal/diversity": diversity, "goal/replay_spread": replay_spread,
                   "goal/spread_ratio": diversity / jnp.maximum(replay_spread, 1e-8),
                   "goal/governed_fraction": lower_governed.mean()}
        return (lower_goal, lower_governed), metrics

    def start_weights(self, book: dict, governed: jax.Array | None) -> jax.Array:
        """``[T * B]``: 0 for imagination starts that are terminal, padding above level 0, or not governed
        by a goal from above (``governed [T, B]``, None at the top)."""
        weight = 1.0 - book["is_terminal"].astype(jnp.float32)
        if self.index > 0:
            weight = weight * book["mask"]
        if governed is not None:
            weight = weight * governed
        return weight.reshape(-1)

    def replayed(self, book: dict, posterior: RSSMState, goal: jax.Array | None) -> Replayed | None:
        """The replayed sequences for the critic's replayed value loss: at the level that earns the task
        reward (no goal from above), where ``agent.replay_value`` turns it on."""
        if goal is not None or not self.actor_critic.replay_value:
            return None
        weights = book["mask"] if "mask" in book else jnp.ones(book["is_first"].shape)
        return Replayed(jax.lax.stop_gradient(state_features(posterior)), book["reward"], book["is_terminal"],
                        book["is_first"], weights)

    def imagination_rollout(self, state: LevelState, starts: RSSMState, goal: jax.Array | None,
                            start_continue: jax.Array, rewarded: jax.Array, extra: dict) -> Rollout:
        """The rollout this level's actor-critic trains on: imagination from ``starts`` (leaves
        ``[N, ...]``) in this level's world model (``state``) under a given policy, with this level's
        rewards (``goal [N, G]`` held, None at the top; ``start_continue [N]``: 0 for starts that do not
        count; ``rewarded``: as in ``update_behaviour``). Metrics of the imagination (the ensemble's
        disagreement) go into ``extra``."""

        def rollout(policy, rollout_key) -> Trajectory:
            params = state.world_model.params
            states, actions = self.world_model.imagine(
                params, starts, lambda features, k: policy(self.policy_input(features, goal), k),
                self.actor_critic.horizon, rollout_key,
            )
            features = state_features(states)
            task = self.world_model.reward(params, features[1:])
            continues = self.world_model.continue_prob(params, features[1:])
            rewards = self.reward(features[1:], goal, task, continues)
            if self.ensemble is not None and (self.disagreement_penalty or self.exploration_bonus):
                doubt = self.ensemble.disagreement(state.auxiliary["ensemble"].params,
                                                   jnp.concatenate([features[:-1], actions], -1))
                doubt_weight = self.exploration_bonus - self.disagreement_penalty * rewarded
                rewards = rewards.at[..., 0].add(doubt_weight * doubt)  # on the main term, in its units
                extra["imagined/disagreement"] = jax.lax.stop_gradient(doubt.mean())
            if self.novelty_scale > 0:
                novelty = self.novelty(state, features[1:])
                rewards = jnp.concatenate([rewards, novelty[..., None]], -1)
            return Trajectory(
                features=self.policy_input(features, goal),
                actions=actions,
                rewards=rewards,
                continues=continues,
                start_continue=start_continue,
            )

        return rollout

    def update_behaviour(self, state: LevelState, book: dict, posterior: RSSMState, goal: jax.Array | None,
                         governed: jax.Array | None, rewarded: jax.Array, key: jax.Array
                         ) -> tuple[LevelState, dict[str, jax.Array]]:
        """One actor-critic step in imagination from every posterior state of the batch, with the goal
        in effect there (``goal [T, B, G]``, ``governed [T, B]``: whether one was; None at the top).
        ``rewarded`` (0-d bool): whether replay has held a rewarded step, which turns the penalty on."""
        starts = jax.tree.map(flatten_time, posterior)
        start_continue = self.start_weights(book, governed)
        goal = None if goal is None else flatten_time(goal)
        extra = self.replayed_novelty(state, starts, start_continue)
        if self.top:
            extra.update(self.value_before_reward(state, posterior, book))
        rollout = self.imagination_rollout(state, starts, goal, start_continue, rewarded, extra)
        actor_critic, metrics, _ = self.actor_critic.update(state.actor_critic, rollout, key,
                                                            self.replayed(book, posterior, goal))
        metrics.update(extra)
        return state.replace(actor_critic=actor_critic), metrics
