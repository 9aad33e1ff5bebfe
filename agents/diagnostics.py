"""What every level of a hierarchical agent does in the real environment, against what it imagines.

``measure_levels`` runs the agent's (sampling) policy for some episodes and, at every decision of
every level, asks that level's world model what discounted sum of the level's own reward the policy
will collect over the level's imagination horizon. It then adds up what the same policy really
collected over the same steps. The difference, imagined minus real, is the level's *exploitation
gap*: a policy that learned to exploit errors of its world model expects far more than it gets.
At the top level it also sets the critic's value at each step against the discounted return that
really followed, over episodes that ended in a terminal state (``critic/terminal_value_error`` and
``critic/terminal_value_corr``): a critic that does not see a slow failure coming (a cart drifting
off its track over hundreds of steps) is optimistic there, beyond the imagination horizon.
A level below the top opens its windows only where the level above ticks: its imagination holds one
goal for its whole horizon, so only a window that starts with a new goal sees the same goal in
reality (a window opened mid-goal would compare the current goal with the next one).

The reward of a level is the one it trains on: the task reward at the top; below it the similarity
of the level's state to the goal from above plus the weighted task reward. A level's real reward
over one of its steps adds the environment's rewards discounted per environment step, as its world
model is trained to predict. Windows that a time limit cuts short are dropped; a terminal state ends
a window early (nothing is collected after it, in the model and in reality).

Where the top level has a novelty term, the same windows set the novelty it expects over its horizon
against the novelty of the states it really reaches (``exploitation/novelty_gap``, unweighted): a
policy that steers its model into states only the model finds new (a wall it imagines walking
through) expects far more novelty than it meets, and explores less than one without the term.

It also reports how often the level below reaches a goal within one step of the level above
(``goal/reach_rate``), how often it would have "reached" a random goal of the same goal space that
it never pursued (``goal/chance_reach_rate``), their difference (``goal/reach_lift``: what pursuing
the goal adds over chance), and pairs of images per level: each goal decoded to an observation, beside
what the agent actually saw when that goal's time was up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from agents.images import display_image
from agents.goals import goal_similarity, reach_threshold
from agents.level import Level, goal_view
from envs.collector import Collector
from world_models.nets import image_input
from world_models.rssm import state_features


@dataclass
class _Window:
    imagined: float
    real: float = 0.0
    steps: int = 0


@dataclass
class _LevelTracker:
    """Open windows and finished (imagined, real) pairs of one level in one environment."""

    horizon: int
    discount: float
    windows: list[_Window] = field(default_factory=list)
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def open(self, imagined: float) -> None:
        self.windows.append(_Window(imagined))

    def add(self, reward: float) -> None:
        for window in self.windows:
            window.real += self.discount**window.steps * reward
            window.steps += 1
        self._close(lambda window: window.steps >= self.horizon)

    def end_episode(self, terminal: bool) -> None:
        if terminal:  # the rest of every window is worth nothing, in the model as in reality
            self._close(lambda window: True)
        self.windows = []

    def _close(self, done) -> None:
        for window in [w for w in self.windows if done(w)]:
            self.pairs.append((window.imagined, window.real))
            self.windows.remove(window)


@dataclass
class _ValueCalibration:
    """The top level's critic value at each of its steps against the discounted task return that
    really followed, in one environment. Only episodes that end in a terminal state count: after a
    time limit the real return is unknown."""

    discount: float
    values: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def open(self, value: float) -> None:
        self.values.append(value)

    def add(self, reward: float) -> None:
        self.rewards.append(reward)

    def end_episode(self, terminal: bool) -> None:
        if terminal and len(self.values) == len(self.rewards):
            real, returns = 0.0, []
            for reward in reversed(self.rewards):
                real = reward + self.discount * real
                returns.append(real)
            self.pairs.extend(zip(self.values, reversed(returns)))
        self.values, self.rewards = [], []


def calibration_scalars(pairs: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}/critic/terminal_value_error`` (mean critic value minus real return, over the steps of
    episodes that ended in a terminal state: positive when the critic does not see the end coming) and
    ``{prefix}/critic/terminal_value_corr`` (their correlation: does the critic rank states by their
    real future?), from ``pairs [P, 2]`` of (value, real return)."""
    if not len(pairs):
        return {}
    scalars = {f"{prefix}/critic/terminal_value_error": float(np.mean(pairs[:, 0] - pairs[:, 1]))}
    if len(pairs) > 1 and np.std(pairs[:, 0]) > 0 and np.std(pairs[:, 1]) > 0:
        scalars[f"{prefix}/critic/terminal_value_corr"] = float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
    return scalars


class _LevelMeter:
    """One level in every environment: the task reward collected since its last step, its open
    windows, and the closest goal similarity the level below reached for each goal it handed down."""

    def __init__(self, level: Level, num_envs: int, env_discount: float):
        self.level, self.env_discount = level, env_discount
        horizon, discount = level.actor_critic.horizon, level.actor_critic.discount
        self.trackers = [_LevelTracker(horizon, discount) for _ in range(num_envs)]
        self.calibrations = [_ValueCalibration(discount) for _ in range(num_envs)] if level.top else []
        # the top's novelty term, imagined against met, in windows like the weighted reward's
        novelty = level.top and level.novelty_scale > 0
        self.novelty_trackers = [_LevelTracker(horizon, discount) for _ in range(num_envs)] if novelty else []
        self.collected = np.zeros(num_envs)  # discounted task reward since the level's last step
        self.elapsed = np.zeros(num_envs, np.int64)
        self.reached: list[float] = []
        self.chance_reached: list[float] = []
        # below the top: goal features at the level's previous step, and the similarity of each step's
        # to the one before (what calibrates an "auto" reach threshold for the goals it is handed)
        self.previous_goal_features: np.ndarray | None = None
        self.one_step: list[float] = []

    def step(self, record: dict, ticks: np.ndarray, opens: np.ndarray, features: np.ndarray,
             goal: np.ndarray | None, imagined: np.ndarray, value: np.ndarray | None = None,
             novelty: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Account for one environment step: ``ticks`` where this level took a step, ``opens`` where
        a window starts; ``goal`` is the one in effect up to this step (None at the top); ``value``
        the top level's critic value of the current states (None below the top); ``novelty`` the
        top's (imagined novelty return, novelty of the current states) where it has a novelty term."""
        first, last, terminal = record["is_first"], record["is_last"], record["is_terminal"]
        self.collected = np.where(first, 0.0, self.collected + self.env_discount**self.elapsed * record["reward"])
        self.elapsed = np.where(first, 0, self.elapsed + 1)
        step_done = (ticks | last) & ~first
        reward = np.asarray(self.level.weighted_reward(features, goal, self.collected, 1.0 - terminal))
        for env, tracker in enumerate(self.trackers):
            # (what collects, what it earns at this step, what it expects when a window opens)
            streams = [(tracker, reward[env], imagined[env])]
            if self.calibrations:
                streams.append((self.calibrations[env], reward[env], value[env]))
            if self.novelty_trackers and novelty is not None:
                streams.append((self.novelty_trackers[env], novelty[1][env], novelty[0][env]))
            for collecting, earned, expected in streams:
                if step_done[env]:
                    collecting.add(float(earned))
                if last[env]:
                    collecting.end_episode(bool(terminal[env]))
                elif opens[env]:
                    collecting.open(float(expected))
        self.collected = np.where(step_done, 0.0, self.collected)
        self.elapsed = np.where(step_done, 0, self.elapsed)
        if not self.level.top:
            self._track_one_step(np.asarray(goal_view(features, self.level.goal_size)), ticks, first)

    def _track_one_step(self, goal_features: np.ndarray, ticks: np.ndarray, first: np.ndarray) -> None:
        """Record the similarity of the goal features at this level's step to those at its previous
        step in the same episode (level 0 steps every environment step; a level above at its ticks)."""
        if self.previous_goal_features is not None:
            similarity = np.asarray(goal_similarity(goal_features, self.previous_goal_features))  # [N]
            self.one_step.extend(similarity[ticks & ~first].tolist())
            stepped = (ticks | first)[:, None]  # an episode's first step starts afresh
            self.previous_goal_features = np.where(stepped, goal_features, self.previous_goal_features)
        else:
            self.previous_goal_features = goal_features

    def scalars(self, reach_threshold: float | None) -> dict[str, float]:
        prefix = f"level{self.level.index}"
        scalars = {}
        for trackers, name in ((self.trackers, ""), (self.novelty_trackers, "novelty_")):
            pairs = np.array([pair for tracker in trackers for pair in tracker.pairs]).reshape(-1, 2)
            if len(pairs):
                imagined_mean, real_mean = pairs.mean(0)
                scalars[f"{prefix}/exploitation/{name}imagined_return"] = float(imagined_mean)
                scalars[f"{prefix}/exploitation/{name}real_return"] = float(real_mean)
                scalars[f"{prefix}/exploitation/{name}gap"] = float(imagined_mean - real_mean)
        calibrated = [pair for calibration in self.calibrations for pair in calibration.pairs]
        scalars.update(calibration_scalars(np.array(calibrated).reshape(-1, 2), prefix))
        if self.reached and reach_threshold is not None:
            scalars[f"{prefix}/goal/reach_threshold"] = reach_threshold
            reach = float(np.mean(np.array(self.reached) >= reach_threshold))
            scalars[f"{prefix}/goal/reach_rate"] = reach
            scalars[f"{prefix}/goal/closest_similarity"] = float(np.mean(self.reached))
            if self.chance_reached:
                chance = float(np.mean(np.array(self.chance_reached) >= reach_threshold))
                scalars[f"{prefix}/goal/chance_reach_rate"] = chance
                scalars[f"{prefix}/goal/reach_lift"] = reach - chance
        return scalars


def measure_levels(agent, state, envs: gym.vector.VectorEnv, episodes: int, seed: int,
                   image_pairs: int = 8) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scalars ``level{l}/exploitation/{imagined_return,real_return,gap}``, ``level{l}/goal/reach_rate``
    and, for image observations, images ``level{l}/goal_vs_actual/<key>`` (goals on top, what was
    seen when each goal's time was up below), from ``episodes`` episodes of the sampling policy."""
    num_envs = envs.num_envs
    collector = Collector(envs, agent.action_layout.dim, agent.obs_layout.to_dict)
    collector.reset(seed=seed)
    policy_state = agent.initial_policy_state(state, num_envs)
    key = jax.random.PRNGKey(seed)
    # a top imagining through level 0 sums its task reward over a step undiscounted (agents.imagined_top)
    meters = [_LevelMeter(level, num_envs, 1.0 if level.imagines_below else agent.discount) for level in agent.levels]
    images = _GoalImages(agent, image_pairs)
    finished_episodes = 0
    previous = None

    def policy(obs, is_first):
        nonlocal policy_state, key, previous
        key, step_key = jax.random.split(key)
        previous = policy_state
        action, policy_state = agent.policy_step(state, policy_state, obs, is_first, step_key)
        action = np.asarray(action)
        return action, agent.action_layout.to_env(action)

    while finished_episodes < episodes:
        record, finished = collector.step(policy)
        key, imagine_key = jax.random.split(key)
        imagined = np.asarray(agent.imagined_returns(state, policy_state, imagine_key))  # [levels, N]
        top_value = np.asarray(agent.top_task_value(state, policy_state))  # [N]
        novelty = ((np.asarray(agent.imagined_novelty_return(state, policy_state, imagine_key)),
                    np.asarray(agent.top_novelty(state, policy_state))) if meters[-1].novelty_trackers else None)
        _meter_step(meters, record, previous, policy_state, imagined, top_value, novelty)
        images.observe(state, policy_state, record)
        finished_episodes += len(finished)
    # the goals a level hands down are reached by the level below: its steps calibrate an "auto" threshold
    thresholds = [None] + [reach_threshold(agent.reach_threshold, below.one_step) for below in meters[:-1]]
    scalars = {name: value for meter, threshold in zip(meters, thresholds)
               for name, value in meter.scalars(threshold).items()}
    return scalars, images.grids()


def _meter_step(meters: list[_LevelMeter], record, previous, policy_state, imagined: np.ndarray,
                top_value: np.ndarray, novelty: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Every level's meter takes one environment step: ``previous``/``policy_state`` are the acting
    carry before and after it, ``imagined [levels, N]`` the levels' imagined returns, ``top_value [N]``
    the top's value, ``novelty`` its (imagined novelty return, current states' novelty), each ``[N]``."""
    ticks = [np.ones(len(top_value), bool)] + [np.asarray(tick) for tick in policy_state.ticks]
    for index, meter in enumerate(meters):
        goal = None if meter.level.top else np.asarray(previous.goals[index])
        features = np.asarray(state_features(policy_state.latents[index]))
        opens = ticks[index] if meter.level.top else ticks[index + 1]  # a new goal from above
        meter.step(record, ticks[index], opens, features, goal, imagined[index],
                   top_value if meter.level.top else None, novelty if meter.level.top else None)
        if not meter.level.top:
            for reached, similarity in ((meters[index + 1].reached, policy_state.finished[index]),
                                        (meters[index + 1].chance_reached, policy_state.chance_finished[index])):
                similarity = np.asarray(similarity)  # NaN where no goal finished at this step
                reached.extend(similarity[np.isfinite(similarity)].tolist())


class _GoalImages:
    """Collects, for environment 0, each decoded goal and the observation when its time was up."""

    def __init__(self, agent, pairs: int):
        self.agent, self.pairs = agent, pairs
        self.keys, self.count_frames = agent.obs_layout.decoded_images, agent.obs_layout.count_frames
        self.uint8: dict[str, bool] = {}  # per key: a uint8 observation (else float: event count frames, voxel grids)
        self.pending: dict[int, dict[str, np.ndarray]] = {}
        self.collected: dict[int, list[tuple[dict, dict]]] = {level: [] for level in range(1, agent.num_levels)}
        self.decode = jax.jit(agent.goal_images, static_argnums=2)

    def observe(self, state, policy_state, record) -> None:
        if not self.keys:
            return
        self.uint8 = {k: record[k].dtype == np.uint8 for k in self.keys}
        for level in range(1, self.agent.num_levels):
            if record["is_first"][0]:
                self.pending.pop(level, None)
            if not policy_state.ticks[level - 1][0]:
                continue
            if level in self.pending and len(self.collected[level]) < self.pairs:
                seen = {k: np.asarray(_displayed(record[k][0], k in self.count_frames)) for k in self.keys}
                self.collected[level].append((self.pending.pop(level), seen))
            goal = policy_state.goals[level - 1][:1]
            decoded = jax.device_get(self.decode(state, goal, level))
            self.pending[level] = {k: np.asarray(display_image(jnp.asarray(decoded[k][0]), self.uint8[k],
                                                               k in self.count_frames)) for k in self.keys}

    def grids(self) -> dict[str, np.ndarray]:
        grids = {}
        for level, pairs in self.collected.items():
            if not pairs:
                continue
            for key in self.keys:
                top = np.concatenate([goal[key] for goal, _ in pairs], axis=1)
                bottom = np.concatenate([seen[key] for _, seen in pairs], axis=1)
                grids[f"level{level}/goal_vs_actual/{key}"] = np.concatenate([top, bottom], axis=0)
        return grids


def _displayed(observation: np.ndarray, on_off: bool) -> jax.Array:
    """A raw image observation as ``display_image`` shows it."""
    return display_image(image_input(jnp.asarray(observation)), observation.dtype == np.uint8, on_off)
