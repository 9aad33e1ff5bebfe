import numpy as np
import pytest

from agents.replay import Replay

SPEC = {"obs": ((2,), np.float32), "image": ((4, 4, 3), np.uint8), "is_first": ((), bool), "step": ((), np.int64)}


def fill(replay: Replay, steps: int, episode_length: int = 5) -> None:
    """Each environment writes its global step counter; episodes start every ``episode_length``."""
    for t in range(steps):
        replay.add({
            "obs": np.full((replay.num_envs, 2), t, np.float32),
            "image": np.full((replay.num_envs, 4, 4, 3), t % 256, np.uint8),
            "is_first": np.full(replay.num_envs, t % episode_length == 0),
            "step": np.full(replay.num_envs, t) + 1000 * np.arange(replay.num_envs),
        })


def test_sampled_chunks_are_contiguous_time_major_and_start_fresh():
    replay = Replay(SPEC, num_envs=3, capacity=300, batch_size=8, batch_length=6, seed=0)
    fill(replay, 50)
    batch = replay.sample()
    assert batch["obs"].shape == (6, 8, 2) and batch["image"].shape == (6, 8, 4, 4, 3)
    assert batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(np.diff(batch["step"], axis=0), 1)  # one environment, in order
    assert batch["is_first"][0].all()
    # inside a chunk, is_first marks exactly the episode starts of the stored stream
    np.testing.assert_array_equal(batch["is_first"][1:], (batch["step"][1:] % 1000) % 5 == 0)


def test_chunks_never_wrap_across_the_write_position():
    replay = Replay(SPEC, num_envs=1, capacity=20, batch_size=64, batch_length=5, seed=1)
    fill(replay, 47)  # the ring wrapped twice; oldest kept step is 27
    for _ in range(20):
        steps = replay.sample()["step"]
        np.testing.assert_array_equal(np.diff(steps, axis=0), 1)
        assert steps.min() >= 27 and steps.max() <= 46


def test_capacity_too_small_for_a_chunk_is_an_error():
    with pytest.raises(ValueError, match="batch_length"):
        Replay(SPEC, num_envs=4, capacity=10, batch_size=1, batch_length=5)


def test_disk_storage_round_trips_in_the_given_directory(tmp_path):
    replay = Replay(SPEC, num_envs=2, capacity=40, batch_size=4, batch_length=5, storage="disk", directory=tmp_path, seed=3)
    fill(replay, 30)
    replay.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.npy", "is_first.npy", "obs.npy", "step.npy"]
    assert replay.data() == {}
    state = replay.state_dict()
    expected = replay.sample()
    reopened = Replay(SPEC, num_envs=2, capacity=40, batch_size=4, batch_length=5, storage="disk", directory=tmp_path, seed=99)
    reopened.load_state_dict(state)
    reopened.rng.bit_generator.state = state["rng"]
    replay.rng.bit_generator.state = state["rng"]
    np.testing.assert_array_equal(reopened.sample()["step"], replay.sample()["step"])
    assert len(reopened) == len(replay) == 40 and expected["step"].shape == (5, 4)


def test_memory_state_and_data_restore_the_same_samples():
    replay = Replay(SPEC, num_envs=2, capacity=40, batch_size=4, batch_length=5, seed=3)
    fill(replay, 33)
    state, data = replay.state_dict(), {k: v.copy() for k, v in replay.data().items()}
    restored = Replay(SPEC, num_envs=2, capacity=40, batch_size=4, batch_length=5, seed=0)
    restored.load_state_dict(state, data)
    np.testing.assert_array_equal(restored.sample()["step"], replay.sample()["step"])


def test_checkpoint_data_of_a_partly_filled_replay_is_only_its_filled_part():
    replay = Replay(SPEC, num_envs=2, capacity=400, batch_size=4, batch_length=5, seed=3)
    fill(replay, 12)
    data = replay.data()
    assert {name: array.shape[:2] for name, array in data.items()} == {name: (2, 12) for name in SPEC}
    template = replay.data_template(12)
    assert {name: (array.shape, array.dtype) for name, array in template.items()} == {
        name: (array.shape, array.dtype) for name, array in data.items()}
    restored = Replay(SPEC, num_envs=2, capacity=400, batch_size=4, batch_length=5, seed=0)
    restored.load_state_dict(replay.state_dict(), {k: v.copy() for k, v in data.items()})
    assert restored.arrays["step"].shape == (2, 200)  # the full buffer stays allocated for what comes next
    np.testing.assert_array_equal(restored.sample()["step"], replay.sample()["step"])
    fill(restored, 1)
    assert len(restored) == 2 * 13


def test_restoring_data_of_the_wrong_length_is_an_error():
    replay = Replay(SPEC, num_envs=2, capacity=400, batch_size=4, batch_length=5, seed=3)
    fill(replay, 12)
    state = replay.state_dict()
    state["count"] = 11
    with pytest.raises(ValueError, match="expected"):
        Replay(SPEC, num_envs=2, capacity=400, batch_size=4, batch_length=5).load_state_dict(state, replay.data())


REWARD_SPEC = {"reward": ((), np.float32), "step": ((), np.int64), "is_first": ((), bool)}


def fill_rewarded(replay: Replay, steps: int, rewarded: dict[int, int]) -> None:
    """Global step counters per environment (``1000 * env + t``); reward 1 at ``rewarded`` {t: env}."""
    for t in range(steps):
        reward = np.zeros(replay.num_envs, np.float32)
        if t in rewarded:
            reward[rewarded[t]] = 1.0
        replay.add({"reward": reward, "is_first": np.zeros(replay.num_envs, bool),
                    "step": np.full(replay.num_envs, t) + 1000 * np.arange(replay.num_envs)})


def test_reward_share_one_puts_a_rewarded_step_in_every_chunk_inside_the_kept_steps():
    replay = Replay(REWARD_SPEC, num_envs=2, capacity=200, batch_size=64, batch_length=8, seed=0, reward_share=1.0)
    # the ring wrapped: steps 150..249 are kept; of the rewarded ones, t=120 was overwritten, t=152 sits
    # two steps after the oldest (its chunks must not start earlier), t=247 near the write position
    fill_rewarded(replay, 250, {120: 0, 152: 1, 247: 0})
    seen = set()
    for _ in range(10):
        batch = replay.sample()
        np.testing.assert_array_equal(np.diff(batch["step"], axis=0), 1)  # contiguous, never wrapped
        assert (batch["step"] % 1000).min() >= 150 and (batch["step"] % 1000).max() <= 249
        assert (batch["reward"] == 1).sum(axis=0).tolist() == [1] * 64
        rewarded_steps = batch["step"][batch["reward"] == 1]
        seen |= set(rewarded_steps.tolist())
        positions = np.argmax(batch["reward"] == 1, axis=0)
    assert seen == {1152, 247}  # env 1 at t=152, env 0 at t=247; never the overwritten t=120
    assert len(set(positions.tolist())) > 1  # the rewarded step is not always at one chunk position


def test_reward_share_draws_that_share_of_chunks_and_is_uniform_without_rewards():
    replay = Replay(REWARD_SPEC, num_envs=1, capacity=1000, batch_size=256, batch_length=10, seed=1, reward_share=0.5)
    fill_rewarded(replay, 1000, {})
    assert (replay.sample()["reward"] == 0).all()  # nothing rewarded yet: uniform chunks, no error
    replay = Replay(REWARD_SPEC, num_envs=1, capacity=1000, batch_size=256, batch_length=10, seed=1, reward_share=0.5)
    fill_rewarded(replay, 1000, {500: 0})
    holding = np.mean([(replay.sample()["reward"] == 1).any(axis=0).mean() for _ in range(20)])
    # 0.5 drawn around the step, plus the uniform half that holds it by chance (10 of 991 starts)
    assert abs(holding - (0.5 + 0.5 * 10 / 991)) < 0.03


def test_reward_share_zero_keeps_the_uniform_sampler_stream():
    """Runs resumed from checkpoints of a replay without the option sample the very same chunks."""
    replay = Replay(REWARD_SPEC, num_envs=2, capacity=200, batch_size=8, batch_length=8, seed=3, reward_share=0.0)
    fill_rewarded(replay, 150, {40: 0})
    rng = np.random.default_rng(3)  # the uniform sampler: chunk starts, then environments
    starts, envs = rng.integers(0, 100 - 8 + 1, 8), rng.integers(0, 2, 8)
    expected = 50 + starts + 1000 * envs  # 100 steps kept per environment, the oldest is t=50
    np.testing.assert_array_equal(replay.sample()["step"][0], expected)


@pytest.mark.parametrize("share, spec, message", [(1.5, REWARD_SPEC, r"\[0, 1\]"),
                                                  (0.5, SPEC, "'reward' field")])
def test_bad_reward_share_is_a_clear_error(share, spec, message):
    with pytest.raises(ValueError, match=message):
        Replay(spec, num_envs=1, capacity=100, batch_size=2, batch_length=4, reward_share=share)
