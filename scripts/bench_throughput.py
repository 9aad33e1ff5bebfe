"""Throughput of the train step: updates/s, matmul FLOPs per update, % of the CPU's matmul peak.

    python -m scripts.bench_throughput           # matched size, 1-3 levels: ~13 min on the loaded 2-core CPU
    python -m scripts.bench_throughput --sizes tiny small matched --levels 1 2 3 --repeats 20
    python -m scripts.bench_throughput --sizes matched --levels 1 --set world_model.backbone=s5
    python -m scripts.bench_throughput --sizes small --levels 1 --config control --vmapped-seeds 3
    python -m scripts.bench_throughput --sizes control --levels 1 --config control   # what CartPole trains

How speed changes are judged. For every ``--sizes`` x ``--levels`` pair it builds the agent
(``agents.hierarchical_agent``) for the ``--env`` spaces (default CartPole-v1) and feeds it one
synthetic random batch of the replay's shape (``synthetic_batch``), already on the device. Sizes:
``tiny`` (the debug preset's sizes, batch 4 x 16, horizon 5), ``small`` (``configs/small.yaml``,
batch 8 x 64), ``control`` (``configs/control.yaml``, batch 16 x 32: what the classic-control runs
train; with ``--config control`` for the rest of that preset) and ``matched`` (DreamerV3's smallest
size, batch 16 x 64, horizon 15: the peer in ``DESIGN.md``). An agent of L > 1 levels takes its structure (K, backbones, ensemble, abstract
horizon) from the ``hierarchy<L>`` preset and the same model sizes as the flat one; ``--config``
presets are layered after that, ``--set`` overrides last.

Measured, each jitted on its own, warm-up and compile excluded, ``block_until_ready``, the median of
``--repeats`` calls, taken in turns (one call of each per round, so that load drift hits all alike):
  - the full train step (what training runs: state donated, updates/s);
  - the world-model update of every level (with auxiliaries and open-loop probes, as trained);
  - the imagination rollout of every level: the rollout the actor loss runs (the goals handed down
    included), forward only. The actor-critic update takes its rollout as a closure that it
    differentiates, so the rollout cannot be jitted apart from it; a stand-in for each level's
    actor-critic (``RolloutOnly``) runs the same closure and returns the trajectory instead;
  - the actor-critic rest (actor and critic losses, gradients, optimiser steps): **the
    actor-critic update minus the rollout**, in time and in FLOPs, since no clean split exists;
  - with ``--vmapped-seeds S``, the train step of S seeds stacked and vmapped in one call (what
    ``scripts.train --seeds`` runs), reported as its time per seed over the single step's: below 1,
    vmapping seeds fills the machine better than one seed does.
Every part donates and carries the state it updates, as the train step does. Each jitted call pays
a dispatch overhead (Python and the runtime, per argument and result leaf), so the parts timed alone
can add up to more than the step ("parts / step"); the overhead of one call with the step's
arguments (a jitted function that returns its donated state) is reported beside them. Matmul FLOPs
come from the jaxpr of each function (``scripts.flop_count``). The CPU's matmul peak is the best of
several jitted ``2048 x 2048`` float32 products, measured before and after the agents (the better
one is used; a loaded machine lowers both). Prints a table, writes ``<--out>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agents.build_levels import resolve_backbones
from agents.hierarchical_agent import HierarchicalAgent
from agents.seed_stack import SeedStack, stack, stack_host
from agents.spaces import replay_spec
from configs.loader import flatten, load_config
from configs.sections import run_sections
from scripts.common import add_config_flags, check_yaml_syntax, command_line_overrides, import_modules, report_user_errors
from scripts.flop_count import count_flops

# Named model sizes: (presets, overrides). Only their SIZE_KEYS reach the benchmarked config, so
# that every number of levels gets the same sizes.
SIZES: dict[str, tuple[list[str], list[tuple[str, Any]]]] = {
    "tiny": (["debug"], []),
    "small": (["small"], []),
    "control": (["control"], []),
    "matched": ([], [("world_model.deter", 320), ("world_model.units", 64), ("world_model.stoch", 32),
                     ("world_model.classes", 4), ("world_model.layers", 2), ("agent.units", 64), ("agent.layers", 3),
                     ("replay.batch_size", 16), ("replay.batch_length", 64), ("agent.horizon", 15)]),
}
SIZE_KEYS = ("world_model.deter", "world_model.stoch", "world_model.classes", "world_model.units",
             "world_model.layers", "world_model.cnn_depth", "backbones", "agent.units", "agent.layers",
             "agent.horizon", "replay.batch_size", "replay.batch_length")
PARTS = ("world_model", "rollout", "actor_critic_rest")
PEAK_SIZE = 2048


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["matched"])
    parser.add_argument("--levels", nargs="+", type=int, choices=[1, 2, 3], default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per function (the median is kept)")
    parser.add_argument("--peak-repeats", type=int, default=5, help="timed matmuls per peak measurement (best kept)")
    parser.add_argument("--vmapped-seeds", type=int, default=0, metavar="S",
                        help="also time the train step of S seeds vmapped in one call (as scripts.train --seeds), "
                             "in turns with the single one, and report its time per seed over the single step's")
    parser.add_argument("--out", default="runs/bench_throughput", help="output prefix: writes <out>.json")
    return parser.parse_args(argv)


def build_config(size: str, levels: int, args: argparse.Namespace) -> dict[str, Any]:
    """The resolved config of one benchmarked agent (see the module docstring for the layering)."""
    presets, overrides = SIZES[size]
    sized = flatten(load_config(presets, overrides))
    size_overrides = [(key, value) for key, value in sized.items() if key.startswith(SIZE_KEYS)]
    structure = [f"hierarchy{levels}"] if levels > 1 else []
    user_presets = [name for preset in args.config for name in str(preset).split(",") if name.strip()]
    check_yaml_syntax(user_presets)
    return load_config(structure + user_presets,
                       [*size_overrides, ("hierarchy.levels", levels), *command_line_overrides(args)])


def environment_spaces(config: dict[str, Any]):
    """The observation and action spaces of the config's environment (built once, then closed)."""
    from envs import make_env  # here: the flags are checked before the environment packages load

    env = make_env(config["env_id"], config["env"], seed=config["seed"])
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def synthetic_batch(agent: HierarchicalAgent, batch_size: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random time-major ``[T, B, ...]`` batch with every field replay gives this agent: episode
    starts and ends, and for each level above 0 the ticks of its acting clock (every ``period`` steps
    since the episode start) with an abstract action held between them."""
    rng = np.random.default_rng(seed)
    spec = {**replay_spec(agent.obs_layout, agent.action_layout.dim), **agent.replay_fields()}
    batch = {}
    for key, (shape, dtype) in spec.items():
        if np.dtype(dtype) == np.uint8:
            batch[key] = rng.integers(0, 256, (length, batch_size) + shape, dtype=np.uint8)
        elif np.dtype(dtype).kind == "f":
            batch[key] = rng.normal(size=(length, batch_size) + shape).astype(dtype)
    actions = agent.action_layout.dim
    is_first = rng.random((length, batch_size)) < 0.02
    is_first[0] = True
    batch["prev_action"] = np.eye(actions, dtype=np.float32)[rng.integers(0, actions, (length, batch_size))]
    batch["prev_action"] *= ~is_first[..., None]
    batch["is_first"] = is_first
    batch["is_terminal"] = np.roll(is_first, -1, 0) & (rng.random((length, batch_size)) < 0.5)
    if agent.num_levels > 1:
        batch["policy_acted"] = np.ones((length, batch_size), bool)
        steps = episode_steps(is_first)
        for index, level in enumerate(agent.levels[1:], 1):
            ticks = steps % level.period == 0
            codes = _random_abstract_actions(level.actor_critic, rng, (length, batch_size))
            held = np.maximum.accumulate(np.where(ticks, np.arange(length)[:, None], 0), axis=0)  # last tick
            batch[f"tick_{index}"] = ticks
            batch[f"goal_action_{index}"] = np.take_along_axis(codes, held[..., None], axis=0)
    return batch


def episode_steps(is_first: np.ndarray) -> np.ndarray:
    """``[T, B]`` steps since the episode start, as the acting clock counts them (0 at ``is_first``)."""
    steps = np.zeros(is_first.shape, np.int64)
    for t in range(1, is_first.shape[0]):
        steps[t] = np.where(is_first[t], 0, steps[t - 1] + 1)
    return steps


def _random_abstract_actions(actor_critic, rng: np.random.Generator, lead: tuple[int, ...]) -> np.ndarray:
    """Uniform abstract actions ``[*lead, A]``: one-hot codes per group, or uniform in ``[-1, 1]``."""
    if not actor_critic.discrete:
        return rng.uniform(-1.0, 1.0, lead + (actor_critic.action_dim,)).astype(np.float32)
    classes = actor_critic.action_dim // actor_critic.action_groups
    codes = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, lead + (actor_critic.action_groups,))]
    return codes.reshape(lead + (actor_critic.action_dim,))


class RolloutOnly:
    """Stands in for a level's ``ActorCritic``: ``update`` runs the rollout closure it is handed under
    the current actor, sampling as the actor loss does, and trains nothing. Everything else is the
    real actor-critic's."""

    def __init__(self, actor_critic):
        self.inner = actor_critic

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, state, rollout, key: jax.Array, replayed: Any = None):  # nothing trains: replayed unused
        def policy(features: jax.Array, policy_key: jax.Array) -> jax.Array:
            return jax.lax.stop_gradient(self.inner.policy(state.actor.params, features).sample(policy_key))

        trajectory = rollout(policy, key)
        # A sum over every leaf: returned as a metric, it keeps XLA from dropping any of the rollout.
        checksum = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(trajectory))
        return state, {"rollout/checksum": checksum}, trajectory


def rollout_only(agent: HierarchicalAgent) -> HierarchicalAgent:
    """A shallow copy of ``agent`` whose levels imagine but do not learn (``RolloutOnly``)."""
    view = copy.copy(agent)
    view.levels = []
    for level in agent.levels:
        stand_in = copy.copy(level)
        stand_in.actor_critic = RolloutOnly(level.actor_critic)
        view.levels.append(stand_in)
    return view


def timed_in_turns(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Each call's first run (compile included) and the median and minimum of ``repeats`` further
    runs, in seconds. The runs take turns, one of each call per round, so that a change in the
    machine's load falls on every call alike (their ratios are what the parts' shares are made of)."""
    first = {}
    for name, call in calls.items():
        start = time.perf_counter()
        jax.block_until_ready(call())
        first[name] = time.perf_counter() - start
        jax.block_until_ready(call())  # a second warm-up: some buffers are allocated on the first run only
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    return {name: {"seconds": statistics.median(values), "min_seconds": min(values), "first_call_seconds": first[name]}
            for name, values in times.items()}


def matmul_peak(repeats: int, size: int = PEAK_SIZE) -> dict[str, float]:
    """The CPU's float32 matmul rate: the best (and median) of ``repeats`` jitted ``size^2`` products."""
    left, right = jax.random.normal(jax.random.PRNGKey(0), (2, size, size), jnp.float32)
    product = jax.jit(jnp.dot)
    jax.block_until_ready(product(left, right))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(left, right))
        times.append(time.perf_counter() - start)
    flop = 2 * size**3
    return {"size": size, "best_gflops": flop / min(times) / 1e9, "median_gflops": flop / statistics.median(times) / 1e9}


def bench_agent(config: dict[str, Any], repeats: int, vmapped_seeds: int = 0) -> dict[str, Any]:
    """Times and matmul FLOPs of one agent's full train step and of its parts (and, for
    ``vmapped_seeds`` > 1, of that many seeds' steps vmapped in one call).

    Each part is jitted like the train step, with the state it updates donated and carried from call
    to call, so that it updates buffers in place as the step does; FLOPs are counted first, on the
    undonated state."""
    agent = HierarchicalAgent.from_config(config, *environment_spaces(config))
    state = agent.init(jax.random.PRNGKey(config["seed"]))
    replay = run_sections(config).replay
    batch = jax.device_put(synthetic_batch(agent, replay.batch_size, replay.batch_length, config["seed"]))
    world_model_key, behaviour_key = jax.random.split(jax.random.PRNGKey(config["seed"] + 1))
    rewarded = jnp.asarray(True)  # as in steady training: the disagreement penalty is on
    copied = lambda: jax.tree.map(jnp.copy, state)

    def world_model_update(train_state, batch, key):
        levels, sequences, metrics = agent._update_world_models(train_state, batch, key)
        return train_state.replace(levels=tuple(levels)), sequences, metrics

    behaviours = {"actor_critic": agent._update_behaviours, "rollout": rollout_only(agent)._update_behaviours}
    world_models = jax.jit(world_model_update, donate_argnums=0)
    updated, sequences, _ = world_models(copied(), batch, world_model_key)  # the behaviours' inputs
    flops = {"world_model": _flops(world_model_update, state, batch, world_model_key),
             "step": _flops(agent._train_step, state, batch)}
    for name, function in behaviours.items():
        flops[name] = _flops(function, state, updated.levels, sequences, rewarded, behaviour_key)

    calls = {"world_model": _carried(world_models, copied(), lambda out: out[0], batch, world_model_key)}
    for name, function in behaviours.items():
        jitted = jax.jit(function, donate_argnums=1)
        calls[name] = _carried(lambda levels, jitted=jitted: jitted(state, levels, sequences, rewarded, behaviour_key),
                               jax.tree.map(jnp.copy, list(updated.levels)), lambda out: out[0])
    calls["step"] = _carried(agent.train_step, copied(), lambda out: out[0], batch)
    passthrough = jax.jit(lambda train_state, batch: (train_state, batch["reward"].sum()), donate_argnums=0)
    calls["call_overhead"] = _carried(passthrough, copied(), lambda out: out[0], batch)
    if vmapped_seeds > 1:
        calls["vmapped_step"] = _vmapped_step(agent, config, vmapped_seeds)
    results = timed_in_turns(calls, repeats)
    parts = {name: {**results[name], **flops[name]} for name in ("world_model", "actor_critic", "rollout")}
    step = {**results["step"], **flops["step"], "call_overhead_seconds": results["call_overhead"]["seconds"]}
    if vmapped_seeds > 1:
        vmapped = results["vmapped_step"]
        step["vmapped"] = {**vmapped, "seeds": vmapped_seeds,
                           "per_seed_over_single": vmapped["seconds"] / vmapped_seeds / step["seconds"]}
    return _summary(config, agent, state, step, parts)


def _vmapped_step(agent: HierarchicalAgent, config: dict[str, Any], seeds: int) -> Callable[[], Any]:
    """A call of the train step of ``seeds`` independent seeds stacked and vmapped, as
    ``scripts.train --seeds`` runs it (``agents.seed_stack``), each seed with its own synthetic batch."""
    replay = run_sections(config).replay
    states = stack([agent.init(jax.random.PRNGKey(config["seed"] + seed)) for seed in range(seeds)])
    batches = stack_host([synthetic_batch(agent, replay.batch_size, replay.batch_length, config["seed"] + seed)
                          for seed in range(seeds)])
    return _carried(SeedStack(agent).train_step, states, lambda out: out[0], jax.device_put(batches))


def _carried(function: Callable[..., Any], carry: Any, next_carry: Callable[[Any], Any], *args: Any
             ) -> Callable[[], Any]:
    """A call of ``function(carry, *args)`` that replaces ``carry`` by ``next_carry(output)`` each time
    (``function`` donates its carry) and returns the output."""
    held = [carry]

    def call() -> Any:
        output = function(held[0], *args)
        held[0] = next_carry(output)
        return output

    return call


def _flops(function: Callable[..., Any], *args: Any) -> dict[str, Any]:
    count = count_flops(function, *args)
    return {"gflop": count.total / 1e9, "conv_gflop": count.conv / 1e9, "while_loops": count.while_loops}


def _summary(config: dict[str, Any], agent: HierarchicalAgent, state, step: dict, results: dict) -> dict[str, Any]:
    """One row of the benchmark: the step, and the parts with their shares of the parts' time."""
    rest = {key: results["actor_critic"][key] - results["rollout"][key] for key in ("seconds", "gflop")}
    parts = {"world_model": results["world_model"], "rollout": results["rollout"], "actor_critic_rest": rest}
    parts_seconds = sum(part["seconds"] for part in parts.values())
    for part in parts.values():
        part["share"] = part["seconds"] / parts_seconds
        part["gflops"] = part["gflop"] / part["seconds"] if part["seconds"] > 0 else float("nan")
    step["updates_per_second"] = 1.0 / step["seconds"]
    step["gflops"] = step["gflop"] / step["seconds"]
    model, agent_section, replay = config["world_model"], config["agent"], run_sections(config).replay
    return {
        "levels": agent.num_levels, "params": sum(agent.parameter_counts(state).values()),
        "batch": [replay.batch_size, replay.batch_length],
        "horizon": agent_section["horizon"],
        "backbones": resolve_backbones(agent.num_levels, config["hierarchy"]["backbones"], model["backbone"]),
        "model": {key: model[key] for key in ("deter", "stoch", "classes", "units", "layers")}
        | {"agent_units": agent_section["units"], "agent_layers": agent_section["layers"]},
        "step": step, "parts": parts, "actor_critic": results["actor_critic"],
        "parts_over_step": parts_seconds / step["seconds"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per agent and size; parts as median ms and share of the parts' time."""
    lines = ["| agent | size | params | batch | updates/s | GFLOP/update | GFLOP/s | % peak | world model "
             "| rollout | actor-critic rest* | parts / step | call overhead "
             "| S seeds vmapped: time per seed / one seed's |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        step, parts = row["step"], row["parts"]
        cells = [f"{1e3 * parts[name]['seconds']:.1f} ms ({100 * parts[name]['share']:.0f}%)" for name in PARTS]
        agent = "flat" if row["levels"] == 1 else f"{row['levels']} levels"
        lines.append(f"| {agent} | {row['size']} | {row['params']:,} | {row['batch'][0]}x{row['batch'][1]} | "
                     f"{step['updates_per_second']:.2f} | {step['gflop']:.3f} | {step['gflops']:.1f} | "
                     f"{step['percent_of_peak']:.1f} | {' | '.join(cells)} | {row['parts_over_step']:.2f} | "
                     f"{1e3 * step['call_overhead_seconds']:.1f} ms | {_vmapped_cell(step)} |")
    return "\n".join(lines)


def _vmapped_cell(step: dict[str, Any]) -> str:
    if "vmapped" not in step:
        return "-"
    vmapped = step["vmapped"]
    return f"S = {vmapped['seeds']}: {vmapped['per_seed_over_single']:.2f}x"


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    device = jax.devices()[0]
    return {"jax": jax.__version__, "backend": jax.default_backend(), "device": f"{device.platform}: {device.device_kind}",
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "machine": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats, "sizes": args.sizes,
            "levels": args.levels, "vmapped_seeds": args.vmapped_seeds, "presets": args.config,
            "overrides": [str(o) for o in command_line_overrides(args)]}


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import_modules(args.imports)
    configs = {(size, levels): build_config(size, levels, args) for size in args.sizes for levels in args.levels}
    meta = metadata(args)
    print(f"JAX {meta['jax']}, {meta['device']}, {meta['cpus']} CPUs, load average {meta['load_average'][0]:.1f}",
          flush=True)
    peaks = [matmul_peak(args.peak_repeats)]
    rows = []
    for (size, levels), config in configs.items():
        start = time.perf_counter()
        rows.append({"size": size, **bench_agent(config, args.repeats, args.vmapped_seeds)})
        print(f"  {size}, {levels} level(s): {rows[-1]['step']['updates_per_second']:.2f} updates/s "
              f"({time.perf_counter() - start:.0f} s with compiles)", flush=True)
    peaks.append(matmul_peak(args.peak_repeats))
    peak = max(p["best_gflops"] for p in peaks)
    for row in rows:
        row["step"]["percent_of_peak"] = 100 * row["step"]["gflops"] / peak
        for part in row["parts"].values():
            part["percent_of_peak"] = 100 * part["gflops"] / peak
    print(f"\nMatmul peak ({PEAK_SIZE}x{PEAK_SIZE} float32, best of {args.peak_repeats}): "
          + " / ".join(f"{p['best_gflops']:.1f}" for p in peaks) + " GFLOP/s before / after; "
          f"env {configs[next(iter(configs))]['env_id']}; medians of {args.repeats} calls\n")
    print(table(rows))
    print("\n* actor-critic rest = actor-critic update minus rollout, each jitted alone; "
          "shares are of the parts' summed time")
    output = {"meta": meta, "peak": {"gflops": peak, "measurements": peaks}, "results": rows}
    path = Path(f"{args.out}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=2, default=float))
    print(f"wrote {path}")
    return output


if __name__ == "__main__":
    main()
