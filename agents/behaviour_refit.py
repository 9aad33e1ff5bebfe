"""Refit a trained flat agent's actor and critic on its frozen world model, from the replay its
checkpoint saved (``scripts.refit_behaviour``).

The world model and critic a checkpoint left define an imagined task. Refitting only the behaviour
there, with the actor gradient of training or another (``agent.actor_grad``), says whether that task
already holds a better policy than the actor found: a refit that finds it in a few hundred updates
puts the fault in how the actor trained; one that finds nothing, with any estimator, points at what
the model imagines (or at a policy it offers only to more updates than the refit made).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import jax

from agents.checkpoint import Checkpointer
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.replay import Replay
from agents.spaces import replay_spec
from configs.sections import as_kwargs, run_sections
from world_models.hierarchy import level_zero_bookkeeping

# The settings a refit may change: each leaves every parameter's and optimiser state's shape as the
# checkpoint saved it (agent.units, layers and bins would not).
REFIT_KEYS = (
    "agent.actor_grad", "agent.entropy", "agent.actor_lr", "agent.critic_lr", "agent.horizon", "agent.discount",
    "agent.lambda_", "agent.min_std", "agent.max_std", "agent.unimix", "agent.slow_critic_fraction",
    "agent.slow_critic_reg", "agent.return_norm_decay", "agent.return_norm_percentiles", "agent.replay_value",
    "agent.eps", "agent.grad_clip",
)


def saved_replay(agent: HierarchicalAgent, config: Mapping[str, Any], logdir: str | Path, step: int) -> Replay:
    """The replay as checkpoint ``step`` of the run in ``logdir`` saved it, with the run's sampler
    (batch size and length, reward share, its random stream where the run left it). Memory storage
    only: a disk replay holds the run's latest records, not those of an earlier checkpoint."""
    sections = run_sections(config)
    spec = {**replay_spec(agent.obs_layout, agent.action_layout.dim), **agent.replay_fields()}
    checkpointer = Checkpointer(Path(logdir) / "checkpoints")
    try:
        saved = checkpointer.meta(step)["replay"]
        if saved.get("storage", "memory") != "memory":
            raise ValueError(f"{logdir}: replay.storage={saved['storage']}; a refit needs the replay saved with "
                             "the checkpoint (replay.storage=memory)")
        replay = Replay(spec, sections.run.num_envs, **as_kwargs(sections.replay))
        replay.load_state_dict(saved, checkpointer.replay(replay.data_template(int(saved["count"])), step))
    finally:
        checkpointer.close()
    return replay


def behaviour_update(agent: HierarchicalAgent) -> Callable[[HierarchicalTrainState, dict, jax.Array],
                                                          tuple[HierarchicalTrainState, dict]]:
    """A jitted ``(state, batch, key) -> (state, metrics)``: one actor-critic update of a flat agent,
    as in training, from every posterior state of a replayed ``batch`` ``[T, B, ...]``; its world model
    (and auxiliaries) stay as they are."""
    if agent.num_levels != 1:
        raise ValueError(f"a behaviour refit is defined for a flat agent (hierarchy.levels 1), not "
                         f"{agent.num_levels} levels")
    level = agent.levels[0]

    def update(state: HierarchicalTrainState, batch: dict, key: jax.Array):
        level_state = state.levels[0]
        _, posterior, _, _ = level.world_model.observe(level_state.world_model.params, batch,
                                                       jax.random.fold_in(key, 1))
        refitted, metrics = level.update_behaviour(
            level_state, level_zero_bookkeeping(batch), jax.lax.stop_gradient(posterior), None, None,
            state.rewarded, key)
        return state.replace(levels=(refitted,)), metrics

    return jax.jit(update)
