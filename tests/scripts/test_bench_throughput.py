"""The throughput benchmark: its FLOP counter against hand-computed numbers, its configs and batches,
and one short run of its main (no test depends on a wall-clock number)."""

import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.hierarchical_agent import HierarchicalAgent
from agents.spaces import replay_spec
from scripts.bench_throughput import build_config, episode_steps, main, parse_args, synthetic_batch
from scripts.flop_count import count_flops


def test_plain_dot_counts_two_flops_per_multiply_add():
    assert count_flops(jnp.dot, jnp.ones((5, 3)), jnp.ones((3, 4))).total == 2 * 5 * 3 * 4


def test_batched_dot_general_counts_every_batch_entry():
    # batch 6 on axis 1 of the left operand and axis 2 of the right one: [2, 6, 3] x [3, 5, 6]
    def batched(left, right):
        return jax.lax.dot_general(left, right, (((2,), (0,)), ((1,), (2,))))

    count = count_flops(batched, jnp.ones((2, 6, 3)), jnp.ones((3, 5, 6)))
    assert count.dot_general == 2 * 6 * 2 * 5 * 3 and count.conv == 0


def test_matmul_in_a_scan_counts_once_per_step():
    def repeated(weights, state):
        return jax.lax.scan(lambda carry, _: (jnp.tanh(carry @ weights), None), state, None, length=7)[0]

    assert count_flops(repeated, jnp.ones((4, 4)), jnp.ones((3, 4))).total == 7 * 2 * 3 * 4 * 4


def test_gradient_of_an_mlp_counts_forward_and_backward():
    def loss(params, inputs):
        hidden = jnp.tanh(inputs @ params["first"])
        return jnp.sum((hidden @ params["second"]) ** 2)

    params = {"first": jnp.ones((4, 8)), "second": jnp.ones((8, 2))}
    inputs = jnp.ones((5, 4))
    first, second = 2 * 5 * 4 * 8, 2 * 5 * 8 * 2
    assert count_flops(loss, params, inputs).total == first + second
    # Gradient for parameters and inputs: each matmul's two operands' gradients, each one forward matmul.
    assert count_flops(jax.grad(loss, argnums=(0, 1)), params, inputs).total == 3 * (first + second)
    # For the parameters alone the input's gradient is never formed: the first layer costs one less.
    assert count_flops(jax.grad(loss), params, inputs).total == 2 * first + 3 * second


def test_convolution_counts_a_kernel_window_per_output_element():
    def conv(images, kernel):  # NHWC images, HWIO kernel, no padding: output [2, 6, 8, 6]
        return jax.lax.conv_general_dilated(images, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    images, kernel = jnp.ones((2, 8, 9, 3)), jnp.ones((3, 2, 3, 6))
    forward = 2 * (2 * 6 * 8 * 6) * (3 * 2 * 3)
    assert count_flops(conv, images, kernel).conv == forward
    # The kernel's gradient is one convolution of the same size; the forward one only runs when its
    # value is used.
    assert count_flops(jax.grad(lambda k: jnp.sum(conv(images, k))), kernel).conv == forward
    assert count_flops(jax.value_and_grad(lambda k: jnp.sum(conv(images, k))), kernel).conv == 2 * forward


def test_work_whose_result_is_unused_is_not_counted():
    def partly_used(left, right):
        _ = left @ right  # traced into the jaxpr, dropped by XLA
        return jnp.sum(left)

    assert count_flops(partly_used, jnp.ones((5, 3)), jnp.ones((3, 4))).total == 0


def test_while_loops_count_once_and_cond_its_dearest_branch():
    def loop(weights, state):
        return jax.lax.while_loop(lambda carry: carry[0, 0] < 10.0, lambda carry: carry @ weights, state)

    count = count_flops(loop, jnp.ones((4, 4)), jnp.ones((3, 4)))
    assert (count.total, count.while_loops) == (2 * 3 * 4 * 4, 1)

    def branch(flag, matrix):
        return jax.lax.cond(flag, lambda m: m @ m @ m, lambda m: m @ m, matrix)

    assert count_flops(branch, True, jnp.ones((4, 4))).total == 2 * (2 * 4 * 4 * 4)


def test_jitted_and_checkpointed_functions_are_walked():
    inner = jax.jit(jax.checkpoint(lambda a, b: a @ b))
    assert count_flops(lambda a, b: inner(a, b) + 1.0, jnp.ones((5, 3)), jnp.ones((3, 4))).total == 2 * 5 * 3 * 4


def test_episode_steps_restart_at_episode_starts():
    is_first = np.array([[True], [False], [False], [True], [False]])
    assert episode_steps(is_first)[:, 0].tolist() == [0, 1, 2, 0, 1]


def test_synthetic_batch_has_every_replay_field_and_the_ticks_of_the_acting_clock():
    config = build_config("tiny", 3, parse_args([]))
    agent = HierarchicalAgent.from_config(config, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    batch = synthetic_batch(agent, batch_size=3, length=40)
    spec = {**replay_spec(agent.obs_layout, agent.action_layout.dim), **agent.replay_fields()}
    assert set(batch) == set(spec)
    for key, (shape, dtype) in spec.items():
        assert batch[key].shape == (40, 3) + shape and batch[key].dtype == np.dtype(dtype), key
    steps = episode_steps(batch["is_first"])
    for index in (1, 2):
        ticks, actions = batch[f"tick_{index}"], batch[f"goal_action_{index}"]
        assert np.array_equal(ticks, steps % agent.levels[index].period == 0)
        changed = np.any(actions[1:] != actions[:-1], -1)
        assert not np.any(changed & ~ticks[1:])  # an abstract action holds until its level's next tick


def test_every_number_of_levels_gets_the_same_model_sizes():
    args = parse_args([])
    configs = [build_config("matched", levels, args) for levels in (1, 2, 3)]
    for config in configs:
        assert (config["world_model"]["deter"], config["world_model"]["layers"], config["agent"]["layers"]) == (320, 2, 3)
        assert (config["replay"]["batch_size"], config["replay"]["batch_length"], config["agent"]["horizon"]) == (16, 64, 15)
    assert [config["hierarchy"]["levels"] for config in configs] == [1, 2, 3]
    assert configs[2]["hierarchy"]["k"] == [4, 4]  # structure from the hierarchy3 preset
    overridden = build_config("tiny", 1, parse_args(["--set", "world_model.deter=48"]))
    assert overridden["world_model"]["deter"] == 48 and overridden["world_model"]["units"] == 32
    control = build_config("control", 1, parse_args(["--config", "control"]))
    assert (control["world_model"]["deter"], control["replay"]["batch_length"], control["agent"]["discount"]) == (
        128, 32, 0.997)  # the preset's sizes and, through --config, the rest of it


def test_main_writes_json_with_positive_numbers(tmp_path):
    out = tmp_path / "throughput"
    main(["--sizes", "tiny", "--levels", "1", "--repeats", "1", "--peak-repeats", "1", "--vmapped-seeds", "2",
          "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result) == {"meta", "peak", "results"} and result["peak"]["gflops"] > 0
    (row,) = result["results"]
    assert (row["size"], row["levels"], row["batch"]) == ("tiny", 1, [4, 16])
    assert row["params"] > 0 and row["parts_over_step"] > 0
    for key in ("seconds", "updates_per_second", "gflop", "gflops", "percent_of_peak"):
        assert row["step"][key] > 0, key
    vmapped = row["step"]["vmapped"]
    assert vmapped["seeds"] == 2 and vmapped["seconds"] > 0
    assert vmapped["per_seed_over_single"] == pytest.approx(vmapped["seconds"] / 2 / row["step"]["seconds"])
    assert set(row["parts"]) == {"world_model", "rollout", "actor_critic_rest"}
    for name in ("world_model", "rollout"):
        assert row["parts"][name]["seconds"] > 0 and row["parts"][name]["gflop"] > 0, name
    # The FLOPs are exact counts of the same jaxprs: the rest is positive whatever the timings did.
    assert row["parts"]["actor_critic_rest"]["gflop"] > 0
    assert row["actor_critic"]["gflop"] == pytest.approx(row["parts"]["rollout"]["gflop"]
                                                         + row["parts"]["actor_critic_rest"]["gflop"])
