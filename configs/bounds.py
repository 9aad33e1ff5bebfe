"""Value ranges of config keys, checked after types, so that a value outside them fails with the key's
name instead of a JAX TypeError or a ZeroDivisionError minutes later.

Every key of `BOUNDS` exists in ``defaults.yaml`` (a test checks); a list value is checked item by
item. The event camera's ranges live with the camera (``envs.event_camera``), which checks them
before it allocates anything.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple


class Bound(NamedTuple):
    """``minimum``/``maximum`` are inclusive, ``above``/``below`` exclusive; None: no limit."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None

    def violated_by(self, value: float) -> str | None:
        """The rule ``value`` breaks, as text (``">= 1"``), or None."""
        for limit, broken, text in ((self.minimum, lambda v, x: v < x, ">="), (self.maximum, lambda v, x: v > x, "<="),
                                    (self.above, lambda v, x: v <= x, ">"), (self.below, lambda v, x: v >= x, "<")):
            if limit is not None and broken(value, limit):
                return f"{text} {limit}"
        return None


POSITIVE_INT = Bound(minimum=1)
NON_NEGATIVE = Bound(minimum=0)
POSITIVE = Bound(above=0)
FRACTION = Bound(minimum=0, maximum=1)

BOUNDS: dict[str, Bound] = {
    "steps": NON_NEGATIVE,
    "run.num_envs": POSITIVE_INT, "run.prefill": NON_NEGATIVE, "run.train_ratio": POSITIVE,
    "run.log_every": NON_NEGATIVE, "run.checkpoint_every": NON_NEGATIVE, "run.keep_checkpoints": POSITIVE_INT,
    "run.eval_every": NON_NEGATIVE, "run.eval_episodes": POSITIVE_INT, "run.diagnose_episodes": NON_NEGATIVE,
    "run.state_probe_steps": NON_NEGATIVE, "run.video_every": NON_NEGATIVE,
    "env.action_repeat": POSITIVE_INT, "env.time_limit": NON_NEGATIVE, "env.image_size": Bound(minimum=8, maximum=1024),
    "replay.capacity": POSITIVE_INT, "replay.batch_size": POSITIVE_INT, "replay.batch_length": Bound(minimum=2),
    "replay.reward_share": FRACTION,
    "world_model.deter": POSITIVE_INT, "world_model.stoch": POSITIVE_INT, "world_model.classes": Bound(minimum=2),
    "world_model.units": POSITIVE_INT, "world_model.layers": NON_NEGATIVE, "world_model.cnn_depth": POSITIVE_INT,
    "world_model.unimix": Bound(minimum=0, below=1), "world_model.free_bits": NON_NEGATIVE,
    "world_model.bins": Bound(minimum=2), "world_model.lr": POSITIVE, "world_model.eps": POSITIVE,
    "world_model.grad_clip": POSITIVE, "world_model.ssm_lr": NON_NEGATIVE, "world_model.activity_weight": NON_NEGATIVE,
    "agent.horizon": POSITIVE_INT, "agent.discount": Bound(above=0, maximum=1), "agent.lambda_": FRACTION,
    "agent.entropy": NON_NEGATIVE, "agent.units": POSITIVE_INT, "agent.layers": NON_NEGATIVE,
    "agent.bins": Bound(minimum=2), "agent.unimix": Bound(minimum=0, below=1), "agent.min_std": POSITIVE,
    "agent.max_std": POSITIVE, "agent.slow_critic_fraction": Bound(above=0, maximum=1),
    "agent.slow_critic_reg": NON_NEGATIVE, "agent.replay_value": NON_NEGATIVE, "agent.return_norm_decay": Bound(minimum=0, below=1),
    "agent.return_norm_percentiles": Bound(minimum=0, maximum=100), "agent.actor_lr": POSITIVE,
    "agent.critic_lr": POSITIVE, "agent.eps": POSITIVE, "agent.grad_clip": POSITIVE,
    "hierarchy.abstract_horizon": NON_NEGATIVE, "hierarchy.ensemble": NON_NEGATIVE,
    "hierarchy.disagreement_penalty": NON_NEGATIVE, "hierarchy.exploration_bonus": NON_NEGATIVE,
    "hierarchy.lr": POSITIVE, "hierarchy.grad_clip": POSITIVE, "hierarchy.novelty": NON_NEGATIVE,
    "hierarchy.discount": Bound(above=0, maximum=1), "hierarchy.entropy": NON_NEGATIVE, "hierarchy.actor_lr": POSITIVE,
    "goal.dim": POSITIVE_INT, "goal.codes": POSITIVE_INT, "goal.classes": Bound(minimum=2), "goal.kl": POSITIVE,
    "goal.kl_target": NON_NEGATIVE,
    "goal.reward_scale": NON_NEGATIVE, "goal.task_reward_scale": NON_NEGATIVE,
    "goal.hindsight": FRACTION, "goal.hindsight_reach": POSITIVE_INT,
    "goal.reach_threshold": Bound(minimum=-1, maximum=1),
    "backbones.mamba.chunk_size": NON_NEGATIVE,
    "world_model.event_encoder.backbones.mamba.chunk_size": NON_NEGATIVE,
    "world_model.event_encoder.pool_stride": POSITIVE_INT,
    "backbones.gru.blocks": POSITIVE_INT, "world_model.event_encoder.backbones.gru.blocks": POSITIVE_INT,
}

# Block counts and the widths they split into equal groups (world_models.backbones.gru).
BLOCK_WIDTHS = (("backbones.gru.blocks", "world_model.deter"),
                ("world_model.event_encoder.backbones.gru.blocks", "world_model.event_encoder.features"))


class BoundsError(ValueError):
    """A config value outside its range; the message names the key, the rule and the value."""


def check_bounds(config: Mapping[str, Any]) -> None:
    """Every key of `BOUNDS` in ``config`` within its range, then the rules that tie keys together."""
    for path, bound in BOUNDS.items():
        value = _lookup(config, path)
        for item in value if isinstance(value, list) else [value]:
            broken = bound.violated_by(item) if isinstance(item, (int, float)) else None
            if broken:
                raise BoundsError(f"config key {path!r} must be {broken}, got {value!r}")
    _check_related(config)


def _check_related(config: Mapping[str, Any]) -> None:
    run, replay, agent = config["run"], config["replay"], config["agent"]
    per_env = replay["capacity"] // run["num_envs"]
    if per_env < replay["batch_length"]:
        raise BoundsError(
            f"replay.capacity={replay['capacity']} over run.num_envs={run['num_envs']} leaves {per_env} steps "
            f"per environment, fewer than replay.batch_length={replay['batch_length']}: raise the capacity"
        )
    for blocks_key, width_key in BLOCK_WIDTHS:
        blocks, width = _lookup(config, blocks_key), _lookup(config, width_key)
        if width % blocks:
            raise BoundsError(f"{blocks_key}={blocks} must divide {width_key}={width} (the GRU's state splits into "
                              f"that many equal blocks): choose a divisor of {width}")
    if agent["min_std"] > agent["max_std"]:
        raise BoundsError(f"agent.min_std={agent['min_std']} must not exceed agent.max_std={agent['max_std']}")
    if run["nonfinite"] == "drop_episode" and run["env_parallel"] == "async":
        raise BoundsError("run.nonfinite=drop_episode needs run.env_parallel=sync (it resets one sub-environment "
                          "alone, which the restarting async vector env does not offer)")


def _lookup(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for name in path.split("."):
        node = node[name]
    return node
