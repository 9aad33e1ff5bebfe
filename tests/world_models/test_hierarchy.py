"""The world-model stack's strided sequences against a step-by-step reference walk."""

import jax.numpy as jnp
import numpy as np
import pytest

from world_models import hierarchy

DISCOUNT = 0.9


def make_column(rng, steps: int, k: int):
    """One replay chunk: random episodes (some terminal, some cut by a time limit), a chunk that
    starts mid-episode, and level-1 ticks every ``k`` steps of each episode as acting takes them."""
    is_first, is_terminal, tick = np.zeros(steps, bool), np.zeros(steps, bool), np.zeros(steps, bool)
    episode_step = int(rng.integers(0, 3 * k))  # the chunk starts this far into an episode
    remaining = int(rng.integers(1, 3 * k))
    for t in range(steps):
        is_first[t] = episode_step == 0
        tick[t] = episode_step % k == 0
        remaining -= 1
        if remaining == 0:  # the episode ends here
            is_terminal[t] = rng.random() < 0.5
            episode_step, remaining = 0, int(rng.integers(1, 3 * k))
        else:
            episode_step += 1
    is_first[0] = True  # replay marks every chunk start
    return is_first, is_terminal, tick


def reference_stride(reward, is_first, is_terminal, mask, duration, features, tick):
    """The abstract steps of one column, walking it one step at a time."""
    steps = []
    collected, elapsed = 0.0, 0.0
    continues = 1.0
    for t in range(len(reward)):
        if not mask[t]:
            continue
        if is_first[t]:
            collected, elapsed, continues = 0.0, 0.0, 1.0
        else:
            collected += DISCOUNT**elapsed * reward[t]
            elapsed += duration[t]
        continues *= 1.0 - is_terminal[t]
        nxt = t + 1 < len(reward) and mask[t + 1] and is_first[t + 1]
        if tick[t] or is_terminal[t] or nxt:
            first = bool(is_first[t]) or not steps
            steps.append({
                "features": features[t], "lower_index": t, "tick": bool(tick[t]),
                "reward": 0.0 if first else collected, "is_first": first,
                "is_terminal": bool(is_terminal[t]), "continue": continues,
                "duration": 0.0 if first else elapsed,
            })
            collected, elapsed, continues = 0.0, 0.0, 1.0
    return steps


def level0(rng, steps, batch, k):
    columns = [make_column(rng, steps, k) for _ in range(batch)]
    is_first, is_terminal, tick = (np.stack(x, 1) for x in zip(*columns))
    reward = rng.normal(size=(steps, batch)).astype(np.float32) * ~is_first
    book = hierarchy.level_zero_bookkeeping(
        {"reward": jnp.asarray(reward), "is_first": jnp.asarray(is_first), "is_terminal": jnp.asarray(is_terminal)}
    )
    features = rng.normal(size=(steps, batch, 3)).astype(np.float32)
    return book, features, tick


def assert_matches_reference(book, features, tick, upper):
    book = {name: np.asarray(value) for name, value in book.items()}
    upper = {name: np.asarray(value) for name, value in upper.items()}
    for column in range(features.shape[1]):
        expected = reference_stride(
            book["reward"][:, column], book["is_first"][:, column], book["is_terminal"][:, column],
            book["mask"][:, column] > 0, book["duration"][:, column], features[:, column], tick[:, column],
        )
        count = int(upper["mask"][:, column].sum())
        assert count == min(len(expected), upper["mask"].shape[0])
        for j, step in enumerate(expected[:count]):
            np.testing.assert_allclose(upper["features"][j, column], step["features"], rtol=1e-6)
            assert upper["lower_index"][j, column] == step["lower_index"]
            assert upper["tick"][j, column] == step["tick"]
            assert upper["is_first"][j, column] == step["is_first"]
            assert upper["is_terminal"][j, column] == step["is_terminal"]
            # the continue flag of an abstract step is the product of those it spans
            assert 1.0 - upper["is_terminal"][j, column] == step["continue"]
            np.testing.assert_allclose(upper["reward"][j, column], step["reward"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(upper["duration"][j, column], step["duration"])
        assert not upper["is_first"][count:, column].any() and not upper["is_terminal"][count:, column].any()


@pytest.mark.parametrize("seed", range(4))
def test_stride_matches_a_step_by_step_walk_across_episode_boundaries(seed):
    rng = np.random.default_rng(seed)
    steps, batch, k = 48, 5, 4
    book, features, tick = level0(rng, steps, batch, k)
    assert book["is_first"][1:].any() and book["is_terminal"].any()  # the case under test
    length = hierarchy.abstract_length(steps, k)
    upper = hierarchy.stride(book, jnp.asarray(features), jnp.asarray(tick), length, DISCOUNT)
    assert_matches_reference(book, features, tick, upper)


def test_two_levels_of_striding_match_the_reference_applied_twice():
    rng = np.random.default_rng(7)
    steps, batch, k = 64, 4, 2
    book, features, tick = level0(rng, steps, batch, k)
    upper = hierarchy.stride(book, jnp.asarray(features), jnp.asarray(tick), hierarchy.abstract_length(steps, k), DISCOUNT)
    # level-2 ticks: every second level-1 tick of an episode
    count = np.zeros(batch, int)
    tick2 = np.zeros(upper["mask"].shape, bool)
    for j in range(tick2.shape[0]):
        first = np.asarray(upper["is_first"][j])
        count = np.where(first, 0, count)
        tick2[j] = np.asarray(upper["tick"][j]) & (count % 2 == 0)
        count = count + np.asarray(upper["tick"][j])
    features2 = np.asarray(upper["features"]) * 2.0
    top = hierarchy.stride(upper, jnp.asarray(features2), jnp.asarray(tick2), hierarchy.abstract_length(tick2.shape[0], 2), DISCOUNT)
    assert_matches_reference({n: upper[n] for n in hierarchy.BOOKKEEPING}, features2, tick2, top)
    # the top level steps less often than the one below, and still spans every episode end
    assert 0 < np.asarray(top["mask"]).sum() < np.asarray(upper["mask"]).sum()
    assert np.asarray(top["is_terminal"]).sum() == np.asarray(upper["is_terminal"] & (upper["mask"] > 0)).sum()


def test_padding_never_leaks_into_the_next_level():
    book, features, tick = level0(np.random.default_rng(3), 32, 2, 4)
    tiny = hierarchy.stride(book, jnp.asarray(features), jnp.asarray(tick), 3, DISCOUNT)  # overflows M
    assert np.asarray(tiny["mask"]).sum(0).tolist() == [3, 3]


def test_previous_actions_are_those_issued_at_the_previous_abstract_step():
    rng = np.random.default_rng(0)
    book, features, tick = level0(rng, 40, 3, 4)
    upper = hierarchy.stride(book, jnp.asarray(features), jnp.asarray(tick), 20, DISCOUNT)
    actions = rng.normal(size=(40, 3, 2)).astype(np.float32)
    previous = np.asarray(hierarchy.previous_actions(jnp.asarray(actions), upper))
    env_index, is_first = np.asarray(upper["env_index"]), np.asarray(upper["is_first"])
    for column in range(3):
        for j in range(20):
            expected = 0.0 if is_first[j, column] else actions[env_index[j - 1, column], column]
            np.testing.assert_allclose(previous[j, column], expected)


def test_governing_step_is_the_latest_tick_at_or_before():
    lower_index = jnp.asarray([[0], [3], [5], [9], [9]])
    tick = jnp.asarray([[True], [False], [True], [True], [False]])
    step = np.asarray(hierarchy.governing_step({"lower_index": lower_index, "tick": tick}, 11))[:, 0]
    assert step.tolist() == [0, 0, 0, 0, 0, 2, 2, 2, 2, 3, 3]
    later = np.asarray(hierarchy.governing_step({"lower_index": lower_index + 2, "tick": tick}, 4))[:, 0]
    assert later.tolist() == [-1, -1, 0, 0]


def test_abstract_batch_is_the_strided_sequence_with_the_actions_issued_before():
    rng = np.random.default_rng(1)
    book, features, tick = level0(rng, 24, 2, 4)
    actions = rng.normal(size=(24, 2, 3)).astype(np.float32)
    batch, upper = hierarchy.abstract_batch(book, jnp.asarray(features), jnp.asarray(tick), jnp.asarray(actions),
                                            12, DISCOUNT)
    expected = hierarchy.stride(book, jnp.asarray(features), jnp.asarray(tick), 12, DISCOUNT)
    for name in expected:
        np.testing.assert_array_equal(np.asarray(upper[name]), np.asarray(expected[name]))
    assert set(batch) == {hierarchy.FEATURES, "prev_action", "reward", "is_first", "is_terminal", "mask"}
    np.testing.assert_array_equal(np.asarray(batch[hierarchy.FEATURES]), np.asarray(expected["features"]))
    np.testing.assert_array_equal(np.asarray(batch["prev_action"]),
                                  np.asarray(hierarchy.previous_actions(jnp.asarray(actions), expected)))


def test_abstract_steps_whose_action_was_never_followed_leave_the_batch():
    """Codes issued during random prefill were never pursued: the abstract transitions they caused are
    masked (the posterior still runs through them); episode starts have no action and stay."""
    rng = np.random.default_rng(2)
    book, features, tick = level0(rng, 24, 2, 4)
    actions = rng.normal(size=(24, 2, 3)).astype(np.float32)
    policy_acted = np.zeros((24, 2), bool)
    policy_acted[10:] = True
    args = (book, jnp.asarray(features), jnp.asarray(tick), jnp.asarray(actions), 12, DISCOUNT)
    plain, upper = hierarchy.abstract_batch(*args)
    masked, _ = hierarchy.abstract_batch(*args, jnp.asarray(policy_acted))
    issued_at = np.concatenate([np.zeros((1, 2), int), np.asarray(upper["env_index"])[:-1]])
    followed = policy_acted[issued_at, np.arange(2)]
    expected = np.asarray(plain["mask"]) * (np.asarray(upper["is_first"]) | followed)
    np.testing.assert_array_equal(np.asarray(masked["mask"]), expected)
    assert 0 < expected.sum() < np.asarray(plain["mask"]).sum()
