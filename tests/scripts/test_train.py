"""End to end through ``python -m scripts.train`` / ``scripts.evaluate`` on the debug preset."""

import json
import shutil

import gymnasium as gym
import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.checkpoint import open_checkpointer
from agents.hierarchical_agent import HierarchicalAgent
from agents.evaluation import load_train_state
from agents.logging import read_metrics
from agents.state_probe import entry_r2
from configs.loader import read_config
from envs import make_vector_env
from scripts import evaluate, probe_episodes, probe_model, probe_policy_change, probe_state, refit_behaviour, train

DOCUMENTED = [
    "episode/return", "episode/length", "level0/world_model/loss", "level0/world_model/loss/reconstruction",
    "level0/world_model/loss/reward", "level0/world_model/loss/continue", "level0/world_model/loss/dynamics",
    "level0/world_model/loss/representation", "level0/world_model/grad_norm", "level0/actor_critic/actor_loss",
    "level0/actor_critic/critic_loss", "level0/actor_critic/actor_grad_norm", "level0/actor_critic/critic_grad_norm",
    "level0/actor_critic/entropy", "level0/actor_critic/imagined_return", "throughput/env_steps_per_second",
    "throughput/train_steps_per_second", "level0/model/open_loop_r2_step5/obs",  # debug: horizon 5
]


def run_train(logdir, *flags):
    return train.main(["--config", "debug", "--logdir", str(logdir), "--no-progress", *flags])


def final_params(logdir):
    config = read_config(logdir / "config.yaml")
    envs = make_vector_env(config["env_id"], config["env"], 1)
    agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
    envs.close()
    state, step = load_train_state(agent, config, logdir)
    return jax.device_get(state), step


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "debug"
    assert run_train(logdir, "--env", "CartPole-v1", "--seed", "3") == 0
    return logdir


def test_debug_run_writes_config_checkpoints_and_documented_scalars(debug_run):
    assert read_config(debug_run / "config.yaml")["seed"] == 3
    accumulator = EventAccumulator(str(debug_run))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert set(DOCUMENTED) <= tags, set(DOCUMENTED) - tags
    rows = read_metrics(debug_run)
    logged = set().union(*(row.keys() for row in rows))
    assert set(DOCUMENTED) <= logged
    losses = [row["level0/world_model/loss"] for row in rows if "level0/world_model/loss" in row]
    assert losses and all(np.isfinite(losses))
    assert (debug_run / "checkpoints" / "400").exists()


def test_evaluation_with_a_seed_is_reproducible_and_logged(debug_run):
    first = evaluate.main(["--logdir", str(debug_run), "--episodes", "2", "--seed", "7", "--video"])
    second = evaluate.main(["--logdir", str(debug_run), "--episodes", "2", "--seed", "7"])
    assert first["returns"] == second["returns"] and len(first["returns"]) == 2
    assert first["success_rate"] is None and first["successes"] is None  # CartPole reports no success
    assert json.loads((debug_run / "eval.json").read_text())["return_mean"] == pytest.approx(second["return_mean"])
    assert (debug_run / "eval.gif").stat().st_size > 0
    assert any("eval/return_mean" in row for row in read_metrics(debug_run))


def test_probe_model_reports_every_entry_at_every_distance_from_the_saved_replay(debug_run, tmp_path):
    out = tmp_path / "probe.json"
    result = probe_model.main(["--logdir", str(debug_run), "--horizon", "3", "--stride", "5", "--out", str(out)])
    assert result["step"] == 400 and result["horizon"] == 3
    obs = result["keys"]["obs"]  # CartPole's 4 entries, posterior and 1..3 steps ahead
    assert len(obs["posterior"]) == 4 and sorted(obs["open_loop"]) == [1, 2, 3]
    values = obs["posterior"] + [v for row in obs["open_loop"].values() for v in row]
    assert all(v is None or (np.isfinite(v) and v <= 1.0) for v in values)
    assert json.loads(out.read_text())["keys"]["obs"]["posterior"] == obs["posterior"]
    with pytest.raises(SystemExit) as error:
        probe_model.main(["--logdir", str(tmp_path)])
    assert error.value.code == 2  # not a run directory: one paragraph, exit status 2


def test_probe_policy_change_judges_both_checkpoints_actors_by_each_judge(debug_run, tmp_path, capsys):
    out = tmp_path / "change.json"
    result = probe_policy_change.main(["--logdir", str(debug_run), "--before", "200", "--steps", "40",
                                       "--samples", "2", "--episodes", "1", "--out", str(out)])
    assert result["steps"] == {"before": 200, "after": 400}
    for judged in result["judges"].values():
        assert judged["starts"] > 0
        for part in ("objective", "start_return", "reward_sum", "horizon_value"):
            paired = judged["after_minus_before"][part]
            assert paired["mean"] == pytest.approx(judged["after"][part] - judged["before"][part], abs=1e-4)
            assert np.isfinite(paired["stderr"])
        assert all(judged[role]["value_reward_corr"] is None or -1 <= judged[role]["value_reward_corr"] <= 1
                   for role in ("before", "after"))
    # the two checkpoints' actors differ, and each judge tells them apart
    assert all(judged["after_minus_before"]["objective"]["mean"] != 0 for judged in result["judges"].values())
    assert all(len(result["real"][role]["greedy"]) == 1 for role in ("before", "after"))
    assert json.loads(out.read_text())["judges"] == result["judges"]
    with pytest.raises(SystemExit) as error:
        probe_policy_change.main(["--logdir", str(debug_run), "--before", "400"])
    assert error.value.code == 2 and "earlier checkpoint" in capsys.readouterr().err


def test_behaviour_update_moves_the_actor_and_critic_alone_on_the_checkpoints_own_replay(debug_run):
    from agents.behaviour_refit import behaviour_update, saved_replay

    config = read_config(debug_run / "config.yaml")
    envs = make_vector_env(config["env_id"], config["env"], 1)
    agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
    envs.close()
    state, _ = load_train_state(agent, config, debug_run, 200)
    replay = saved_replay(agent, config, debug_run, 200)
    checkpointer = open_checkpointer(debug_run / "checkpoints")
    counts = {step: checkpointer.meta(step)["replay"]["count"] for step in (200, 400)}
    checkpointer.close()
    assert replay.count == counts[200] < counts[400]  # step 200's replay, not the latest
    batch = replay.sample(np.random.default_rng(0))
    length, size = config["replay"]["batch_length"], config["replay"]["batch_size"]
    assert batch["is_first"].shape == (length, size)
    refitted, metrics = behaviour_update(agent)(state, batch, jax.random.PRNGKey(0))
    before, after = jax.device_get(state.levels[0]), jax.device_get(refitted.levels[0])
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert same(before.world_model.params, after.world_model.params)
    assert not same(before.actor_critic.actor.params, after.actor_critic.actor.params)
    assert not same(before.actor_critic.critic.params, after.actor_critic.critic.params)
    assert all(np.isfinite(float(value)) for value in metrics.values())


def test_refit_behaviour_evaluates_as_it_refits_and_refuses_what_would_change_the_model(debug_run, tmp_path, capsys):
    out = tmp_path / "refit.json"
    steps = sorted(path.name for path in (debug_run / "checkpoints").iterdir())
    result = refit_behaviour.main(["--logdir", str(debug_run), "--step", "200", "--updates", "3", "--eval-every", "2",
                                   "--episodes", "1", "--set", "agent.actor_grad=dynamics", "agent.actor_lr=0.001",
                                   "--out", str(out)])
    assert result["step"] == 200 and [row["updates"] for row in result["rows"]] == [0, 2, 3]
    assert all(len(row["returns"]) == 1 for row in result["rows"])
    assert all(np.isfinite(row[name]) for row in result["rows"][1:] for name in refit_behaviour.WATCHED)
    assert json.loads(out.read_text()) == result
    assert sorted(path.name for path in (debug_run / "checkpoints").iterdir()) == steps  # training's untouched
    for change, said in (("world_model.deter=8", "behaviour's settings"), ("agent.units=8", "behaviour's settings"),
                         ("agent.actor_grad=sideways", "actor_grad")):
        with pytest.raises(SystemExit) as error:
            refit_behaviour.main(["--logdir", str(debug_run), "--set", change])
        assert error.value.code == 2 and said in capsys.readouterr().err


def test_probe_state_says_a_state_run_has_no_camera(debug_run, capsys):
    with pytest.raises(SystemExit) as error:
        probe_state.main(["--logdir", str(debug_run), "--steps", "1"])
    assert error.value.code == 2 and "observes pixels or events" in capsys.readouterr().err


def test_probe_episodes_says_how_each_episode_ended_and_what_the_critic_expected(debug_run, tmp_path):
    out = tmp_path / "episodes.json"
    result = probe_episodes.main(["--logdir", str(debug_run), "--episodes", "3", "--bins", "3", "--out", str(out)])
    assert result["step"] == 400 and len(result["episodes"]) == 3
    for episode in result["episodes"]:
        assert episode["return"] == episode["length"]  # CartPole pays 1 a step
        x, _, angle, _ = episode["final"]["obs"]
        if episode["ended"] == "terminated":  # CartPole's own bounds: the cart off the track or the pole down
            assert abs(x) > 2.4 or abs(angle) > 0.2094
        else:
            assert episode["length"] == 500
    steps = sum(episode["length"] for episode in result["episodes"])
    assert len(result["entries"]["obs"]) == 4
    for entry in result["entries"]["obs"]:
        assert sum(row["steps"] for row in entry["value_by_bins"]) == steps
        assert -1.0 <= entry["correlation_with_value"] <= 1.0
    ended = [episode["length"] for episode in result["episodes"] if episode["ended"] == "terminated"]
    assert result["value_vs_return"] is None if not ended else result["value_vs_return"]["steps"] == sum(ended)
    head = result["reward_head"]  # CartPole pays 1 at every step: nothing to bin or correlate
    assert head["steps"] == steps - 3 and head["mean_reward"] == 1.0 and head["by_reward_bins"] is None
    assert np.isfinite(head["mean_abs_error"]) and "trace" not in result
    assert json.loads(out.read_text()) == result


def test_probe_episodes_ranks_every_action_by_the_model_and_critic(debug_run, tmp_path, capsys):
    result = probe_episodes.main(["--logdir", str(debug_run), "--episodes", "1", "--action-values", "4",
                                  "--out", str(tmp_path / "episodes.json")])
    actions = result["actions"]
    assert actions["steps"] == result["episodes"][0]["length"] and 0.0 <= actions["agreement"] <= 1.0
    assert actions["regret"] >= 0.0 and actions["return_scale"] >= 1.0
    assert np.isfinite(actions["mean_abs_advantage"]) and actions["mean_abs_advantage"] > 0.0
    for per_action in actions["entries"]["obs"]:  # CartPole's 4 entries, 2 actions, taken shares adding to 1
        shares = [[row["mean_value"] for row in action["taken_by_bins"]] for action in per_action]
        np.testing.assert_allclose(np.sum(shares, 0), 1.0)
    assert "the action ranked first taken at" in capsys.readouterr().out


def test_probe_episodes_ranks_a_grid_of_continuous_actions_by_the_model_and_critic(tmp_path, capsys):
    logdir = tmp_path / "pendulum"
    assert run_train(logdir, "--env", "Pendulum-v1", "--steps", "256") == 0  # trained heads: Q varies
    result = probe_episodes.main(["--logdir", str(logdir), "--episodes", "1", "--action-values", "2",
                                  "--action-grid", "3", "--trace", "--out", str(tmp_path / "episodes.json")])
    actions, steps = result["continuous_actions"], result["episodes"][0]["length"]
    assert "actions" not in result and actions["steps"] == steps and actions["grid"] == [-1.0, 0.0, 1.0]
    assert actions["regret"] >= 0.0 and 0 <= actions["clear_steps"] <= steps  # the greedy action is a candidate
    assert len(actions["dimensions"]) == 1  # Pendulum's torque
    assert -1.0 <= actions["dimensions"][0]["mean_best"] <= 1.0
    assert np.isfinite(actions["mean_standard_error"]) and actions["mean_standard_error"] > 0.0
    values = np.asarray(result["trace"][0]["action_values"])
    assert values.shape == (steps, 1 + 3) and np.isfinite(values).all()  # the greedy action, then the grid
    assert np.ptp(values, 1).max() > 0.0  # the first torque moves Q
    gradients = np.asarray(result["trace"][0]["action_gradients"])
    assert gradients.shape == (steps, 1) and np.isfinite(gradients).all() and np.abs(gradients).max() > 0.0
    dimension = actions["dimensions"][0]
    assert dimension["mean_gradient"] == pytest.approx(gradients.mean(), rel=1e-5)
    assert dimension["gradient_steps"] <= actions["clear_steps"] and dimension["mean_abs_grid_slope"] > 0.0
    slope_correlation = dimension["gradient_grid_slope_correlation"]
    assert slope_correlation is None or -1.0 <= slope_correlation <= 1.0
    printed = capsys.readouterr().out
    assert "the greedy action against Q(s, a)" in printed and "dQ/da backpropagated through the model" in printed


def test_probe_model_cuts_the_replay_into_chunks_that_start_episodes():  # entry_r2: test_bench_world_model
    steps = {"x": np.arange(10)[:, None], "is_first": np.zeros((10, 1), bool)}
    batch = probe_model.chunks(steps, 4)  # two whole chunks of one column; the last 2 records dropped
    np.testing.assert_array_equal(batch["x"], [[0, 4], [1, 5], [2, 6], [3, 7]])
    assert batch["is_first"][0].all() and not batch["is_first"][1:].any()


def test_resume_continues_the_run_and_reproduces_the_uninterrupted_parameters(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_train(whole, "--steps", "300")
    run_train(split, "--steps", "150")
    metrics_before, seconds_before = read_metrics(split), training_seconds(split)
    run_train(split, "--resume", "--steps", "300")
    assert 0.0 < seconds_before < training_seconds(split)  # the wall clock adds up over sessions
    whole_state, whole_step = final_params(whole)
    split_state, split_step = final_params(split)
    assert whole_step == split_step == 300
    assert int(whole_state.updates) == int(split_state.updates)
    for a, b in zip(jax.tree.leaves(whole_state), jax.tree.leaves(split_state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    resumed_rows = read_metrics(split)[len(metrics_before):]
    assert min(row["step"] for row in resumed_rows) > 150  # the logger's step continues


def training_seconds(logdir):
    """The training seconds saved with the run's last checkpoint."""
    checkpointer = open_checkpointer(logdir / "checkpoints")
    try:
        return checkpointer.meta()["counters"]["seconds"]
    finally:
        checkpointer.close()


def test_no_burst_of_updates_after_resume(tmp_path):
    logdir = tmp_path / "run"
    run_train(logdir, "--steps", "200")
    state, _ = final_params(logdir)
    updates_at_200 = int(state.updates)
    run_train(logdir, "--resume", "--steps", "202")  # one more vector step of 2 envs
    state, _ = final_params(logdir)
    # debug preset: train_ratio 64 over batches of 4 x 16 steps = one update per env step
    assert int(state.updates) - updates_at_200 == 2


def test_resume_refuses_an_architecture_change_with_a_diff(debug_run, capsys):
    with pytest.raises(SystemExit) as error:
        run_train(debug_run, "--resume", "--set", "world_model.deter=64")
    assert "world_model.deter: 32 -> 64" in str(error.value)


def test_a_new_run_refuses_to_overwrite_an_existing_one(debug_run):
    with pytest.raises(SystemExit, match="--resume"):
        run_train(debug_run)


def test_unknown_env_id_says_how_to_list_ids(tmp_path):
    with pytest.raises(SystemExit) as error:
        run_train(tmp_path / "x", "--env", "CartPoel-v1")
    assert "list_env_ids" in str(error.value) and "CartPole-v1" in str(error.value)


def test_state_probe_refuses_a_run_without_a_camera(tmp_path):
    with pytest.raises(SystemExit, match="state_probe_steps=10 with CartPole-v1: the environment gives no"):
        run_train(tmp_path / "x", "--set", "run.state_probe_steps=10")
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_bad_config_key_is_reported(tmp_path):
    with pytest.raises(SystemExit, match="agent.entropi"):
        run_train(tmp_path / "x", "--set", "agent.entropi=1")


class DiscreteObsEnv(gym.Env):
    observation_space = gym.spaces.Discrete(4)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, False, False, {}


class MultiDiscreteActionEnv(DiscreteObsEnv):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


gym.register("HmbrlTestDiscreteObs-v0", entry_point=DiscreteObsEnv)
gym.register("HmbrlTestMultiDiscrete-v0", entry_point=MultiDiscreteActionEnv)


@pytest.mark.parametrize("env_id, named", [("HmbrlTestDiscreteObs-v0", "Discrete(4)"),
                                           ("HmbrlTestMultiDiscrete-v0", "MultiDiscrete")])
def test_unsupported_spaces_name_the_space(tmp_path, env_id, named):
    with pytest.raises(SystemExit) as error:
        run_train(tmp_path / "x", "--env", env_id)
    assert named in str(error.value)


def test_non_finite_loss_stops_training_keeps_the_last_good_checkpoint_and_resumes_with_a_lower_lr(tmp_path):
    logdir = tmp_path / "nan"
    diverging = ["--steps", "80", "--set", "world_model.lr=1e30", "run.prefill=50", "run.checkpoint_every=40"]
    with pytest.raises(SystemExit) as error:
        run_train(logdir, *diverging)
    message = str(error.value)
    assert error.value.code == 2 and "nan" in message.lower() and "checkpoint (step 40)" in message
    assert "world_model.lr" in message  # observations are checked at collection: the update diverged
    state, step = final_params(logdir)
    assert step == 40
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))
    remedy = ["--logdir", str(logdir), "--no-progress", "--resume", "--set", "world_model.lr=1e-4"]
    assert train.main(remedy) == 0  # the suggested change is accepted by --resume
    assert final_params(logdir)[1] == 80


@pytest.mark.parametrize("backbone", ["s5", "mamba", "egru", "event_s5"])
def test_every_backbone_trains_the_world_model_through_scripts_train(tmp_path, backbone):
    logdir = tmp_path / backbone
    assert run_train(logdir, "--steps", "150", "--set", f"world_model.backbone={backbone}") == 0
    losses = [row["level0/world_model/loss"] for row in read_metrics(logdir) if "level0/world_model/loss" in row]
    assert losses and np.all(np.isfinite(losses))
    state, _ = final_params(logdir)
    assert int(state.updates) > 0


@pytest.mark.parametrize("representation", ["frame", "voxel", "events", "integrated"])
def test_event_camera_representations_train_end_to_end(tmp_path, capsys, representation, debug_run):
    logdir = tmp_path / representation
    camera = [f"env.event_camera.representation={representation}", "env.image_size=[16,16]",
              "env.event_camera.max_events=128", "env.event_camera.contrast_pos=0.05",
              "env.event_camera.contrast_neg=0.05"]  # low thresholds: a 16x16 CartPole still fires
    if representation != "events":  # float images are logged as images too (count frames, signed bins)
        camera.append("run.video_every=100")
    else:  # evaluations with the state probe of the latent the event encoder feeds
        camera += ["run.eval_every=60", "run.state_probe_steps=8"]
    assert run_train(logdir, "--env", "event:CartPole-v1", "--steps", "120", "--set", *camera) == 0
    routed = {"frame": "cnn {'obs': (16, 16, 2)}", "voxel": "cnn {'obs': (16, 16, 5)}",
              "integrated": "cnn {'obs': (16, 16, 1)}",
              "events": "event encoder {'events': \"up to 128 events, count in 'count'\"}"}
    assert routed[representation] in capsys.readouterr().out  # the run says where its observation goes
    rows = [row for row in read_metrics(logdir) if "level0/world_model/loss" in row]
    key = "events" if representation == "events" else "obs"
    assert rows and all(np.isfinite(row[f"level0/world_model/r2/{key}"]) for row in rows)
    assert all(np.isfinite(row["level0/world_model/grad_norm"]) and row["level0/world_model/grad_norm"] > 0
               for row in rows)
    state, _ = final_params(logdir)
    assert int(state.updates) > 0
    if representation == "events":
        probed = [row for row in read_metrics(logdir) if "eval/return_mean" in row]
        assert probed and all(np.isfinite(row[f"eval/state_r2/[{entry}]"]) for row in probed for entry in range(4))
        report = probe_state.main(["--logdir", str(logdir), "--steps", "1", "--batch", "2", "--predictions",
                                   "--open-loop", "3", "--action-response", "2"])
        assert report["entries"] == ["[0]", "[1]", "[2]", "[3]"]  # CartPole's x, x', theta, theta'
        assert report["fit_episodes"] == report["test_episodes"] == 2  # 4 episodes
        for model in probe_state.PROBES:
            assert len(report[model]["r2"]) == 4 and all(np.isfinite(report[model]["r2"]))
        kept = {name: np.asarray(rows) for name, rows in report["test_predictions"].items()}
        assert kept["targets"].shape == kept["predictions"].shape == (report["test_steps"], 4)
        # the kept steps are the ones the reported R^2 was computed on
        np.testing.assert_allclose(entry_r2(kept["predictions"], kept["targets"]), report["trained"]["r2"], atol=1e-3)
        for readout in ("posterior_readout", "own_readout"):
            assert sorted(report["open_loop"][readout]) == [1, 2, 3]  # imagined 1..3 steps ahead of each test step
            assert all(len(r2) == 4 for r2 in report["open_loop"][readout].values())
            for h, imagined in report["open_loop_predictions"][readout].items():
                assert len(imagined["steps"]) == len(imagined["predictions"]) and min(imagined["steps"]) >= h
                assert max(imagined["steps"]) < report["test_steps"]
        response = report["action_response"]  # CartPole's two actions: one contrast, push right against left
        assert response["effects"] == ["a=1 - a=0"] and sorted(response["real"]) == [1, 2]
        for h in (1, 2):
            assert np.asarray(response["imagined"][h]).shape == np.asarray(response["real"][h]).shape == (1, 4)
            assert response["imagined_steps"][h] == report["test_steps"] - 2 * h  # 2 test episodes
            effects = report["action_response_predictions"][h]
            assert np.asarray(effects["effects"]).shape == (len(effects["starts"]), 1, 4)
            assert max(effects["starts"]) < report["test_steps"]
        assert response["real"][1][0][1] > 0  # in the environment, pushing right speeds the cart up
        assert json.loads((logdir / "probe_state.json").read_text())["step"] == report["step"]
        # a state run of the same env acts instead, from the camera env's source observation: its first greedy
        # episode is the one it plays in its own env from the same seeded reset
        acted = probe_state.main(["--logdir", str(logdir), "--steps", "1", "--batch", "2", "--act-with", str(debug_run),
                                  "--act-step", "400", "--seed", "5", "--out", str(tmp_path / "acted.json")])
        assert acted["acted_by"] == {"logdir": str(debug_run), "step": 400}
        own = evaluate.main(["--logdir", str(debug_run), "--episodes", "4", "--seed", "5"])
        assert acted["returns"][0] == own["returns"][0] and len(acted["returns"]) >= 4
        assert all(np.isfinite(acted["trained"]["r2"]))
        camera_run = tmp_path / "camera_copy"  # a camera run observes events, not the source state
        shutil.copytree(logdir, camera_run)
        with pytest.raises(SystemExit) as error:
            probe_state.main(["--logdir", str(logdir), "--steps", "1", "--act-with", str(camera_run)])
        assert error.value.code == 2 and "observes its own state" in capsys.readouterr().err
        # no vector observation: the episodes are reported by the camera's source state instead
        episodes = probe_episodes.main(["--logdir", str(logdir), "--episodes", "2", "--trace"])
        steps = [episode["length"] for episode in episodes["episodes"]]
        assert len(episodes["entries"]["source"]) == 4 and episodes["reward_head"]["steps"] == sum(steps) - 2
        assert [len(episode["entries"]["source"]) for episode in episodes["trace"]] == steps
        assert [len(episode["actions"]) for episode in episodes["trace"]] == steps


def test_raw_events_train_with_their_integrated_image_as_the_only_reconstruction_target(tmp_path, capsys):
    """The camera adds the integrated image beside the raw events; the encoder reads the events, the
    decoder reconstructs the image alone (no count frame), and its reconstructions are logged."""
    logdir = tmp_path / "events_integrated_target"
    camera = ["env.event_camera.representation=events", "env.event_camera.extra_representations=[integrated]",
              "env.event_camera.integration_time=.inf", "encoder.cnn_keys=", "decoder.cnn_keys=integrated",
              "env.image_size=[16,16]", "env.event_camera.max_events=128", "env.event_camera.contrast_pos=0.05",
              "env.event_camera.contrast_neg=0.05", "run.video_every=100"]
    assert run_train(logdir, "--env", "event:CartPole-v1", "--steps", "120", "--set", *camera) == 0
    out = capsys.readouterr().out
    assert "cnn {'integrated': (16, 16, 1)} event encoder" in out
    assert "(targets only: ['integrated']) (inputs only: ['events'])" in out
    rows = [row for row in read_metrics(logdir) if "level0/world_model/loss" in row]
    assert rows and all(np.isfinite(row["level0/world_model/r2/integrated"]) for row in rows)
    assert not any("level0/world_model/r2/events" in row for row in rows)
    state, _ = final_params(logdir)
    assert int(state.updates) > 0 and "ConvEncoder_0" not in state.levels[0].world_model.params["encoder"]


def test_same_seed_gives_identical_parameters_and_returns(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run_train(first, "--steps", "150", "--seed", "11")
    run_train(second, "--steps", "150", "--seed", "11")
    returns = [[r["episode/return"] for r in read_metrics(d) if "episode/return" in r] for d in (first, second)]
    assert returns[0] and returns[0] == returns[1]
    for a, b in zip(jax.tree.leaves(final_params(first)[0]), jax.tree.leaves(final_params(second)[0])):
        np.testing.assert_array_equal(a, b)


def test_disk_replay_lives_in_the_run_directory_and_resumes(tmp_path):
    logdir = tmp_path / "disk"
    run_train(logdir, "--steps", "120", "--set", "replay.storage=disk")
    assert sorted(p.name for p in (logdir / "replay").iterdir()) == [
        "is_first.npy", "is_terminal.npy", "obs.npy", "prev_action.npy", "reward.npy"]
    run_train(logdir, "--resume", "--steps", "160")
    state, step = final_params(logdir)
    assert step == 160 and int(state.updates) > 0


def finite_level_metrics(logdir, levels):
    rows = read_metrics(logdir)
    logged = set().union(*(row.keys() for row in rows))
    for level in range(levels):
        for name in ("world_model/loss", "actor_critic/actor_loss", "model/open_loop_error", "exploitation/gap"):
            assert f"level{level}/{name}" in logged, f"level{level}/{name} was not logged"
    values = [value for row in rows for name, value in row.items() if name.startswith("level")]
    assert values and np.all(np.isfinite(values))
    return logged


def test_two_levels_train_end_to_end_resume_and_measure_every_level(tmp_path):
    logdir = tmp_path / "two"
    flags = ["--steps", "200", "--set", "hierarchy.levels=2", "hierarchy.k=[4]", "hierarchy.ensemble=2",
             "hierarchy.disagreement_penalty=0.1", "hierarchy.novelty=0.1", "goal.task_reward_scale=0.5",
             "run.eval_every=200", "hierarchy.novelty_reward=predicted"]
    assert run_train(logdir, *flags) == 0
    assert run_train(logdir, "--resume", "--steps", "280") == 0
    logged = finite_level_metrics(logdir, 2)
    assert {"level1/goal/reach_rate", "level1/goal/chance_reach_rate", "level1/goal/reach_lift",
            "level1/goal/diversity", "level1/goal/spread_ratio", "level1/goal/code_perplexity",
            "level1/goal/autoencoder_kl_weight", "level1/model/controllability",
            "level1/model/reward_controllability", "level1/imagined/disagreement",
            "level1/actor_critic/value/novelty", "level1/actor_critic/replayed_reward/novelty",
            "level1/exploitation/novelty_gap", "level1/novelty/predictor_loss", "level1/novelty/measured",
            "level0/actor_critic/value/task", "replay/rewarded_fraction"} <= logged
    assert "level0/exploitation/novelty_gap" not in logged  # only the top has a novelty term
    state, step = final_params(logdir)
    assert step == 280 and len(state.levels) == 2
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


@pytest.mark.parametrize("novelty_reward", ["measured", "predicted"])
def test_a_flat_agent_with_a_novelty_term_trains_and_measures_its_novelty_gap(tmp_path, novelty_reward):
    """Arm B of the hierarchy benchmark: one level, novelty from an autoencoder of its own states."""
    logdir = tmp_path / "flat_novelty"
    assert run_train(logdir, "--steps", "200", "--set", "hierarchy.novelty=0.1", "run.eval_every=200",
                     f"hierarchy.novelty_reward={novelty_reward}") == 0
    logged = finite_level_metrics(logdir, 1)
    assert ("level0/novelty/predictor_loss" in logged) == (novelty_reward == "predicted")
    assert {"level0/novelty/autoencoder_loss", "level0/actor_critic/value/novelty",
            "level0/actor_critic/imagined_reward/novelty", "level0/actor_critic/replayed_reward/novelty",
            "level0/exploitation/novelty_imagined_return", "level0/exploitation/novelty_real_return",
            "level0/exploitation/novelty_gap", "level0/world_model/reward_on_rewarded",
            "level0/actor_critic/value_before_reward"} <= logged
    assert not any("#weight" in name for name in logged)


def test_two_levels_with_the_top_imagining_through_level_zero_train_end_to_end(tmp_path):
    logdir = tmp_path / "imagined"
    flags = ["--steps", "200", "--set", "hierarchy.levels=2", "hierarchy.top_model=imagined", "hierarchy.k=[4]",
             "hierarchy.abstract_horizon=2", "hierarchy.novelty=0.1", "run.eval_every=200",
             "hierarchy.novelty_reward=measured"]
    assert run_train(logdir, *flags) == 0
    rows = read_metrics(logdir)
    logged = set().union(*(row.keys() for row in rows))
    assert {"level0/world_model/loss", "level1/actor_critic/actor_loss", "level1/goal/autoencoder_loss",
            "level1/model/controllability", "level1/exploitation/gap", "level1/goal/reach_rate",
            "level1/actor_critic/replayed_reward/novelty", "level1/exploitation/novelty_gap"} <= logged
    assert not any(name.startswith("level1/world_model") for name in logged)  # it has no model of its own
    assert np.all(np.isfinite([value for row in rows for name, value in row.items() if name.startswith("level")]))
    state, step = final_params(logdir)  # restores a checkpoint whose level 1 holds no model parameters
    assert step == 200 and state.levels[1].world_model.params == {}
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


def test_three_levels_with_direct_goals_and_s5_above_train_end_to_end(tmp_path):
    logdir = tmp_path / "three"
    flags = ["--steps", "200", "--set", "hierarchy.levels=3", "hierarchy.k=[2,2]", "goal.space=direct",
             "hierarchy.backbones=[gru,s5,s5]", "run.eval_every=200", "agent.replay_value=0.3"]
    assert run_train(logdir, *flags) == 0
    finite_level_metrics(logdir, 3)
    logged = set().union(*(row.keys() for row in read_metrics(logdir)))
    assert {name for name in logged if "replay_value" in name} == {"level2/actor_critic/replay_value_loss"}  # the top


def test_a_resumed_run_continues_its_coverage_total(tmp_path):
    """A stopped and resumed run counts the cells it visited as the uninterrupted run does."""
    def totals(logdir):
        return [(row["step"], row["coverage/cells_total"]) for row in read_metrics(logdir) if "coverage/cells_total" in row]

    assert run_train(tmp_path / "whole", "--env", "hmbrl/GridFourRooms-v0", "--steps", "300") == 0
    assert run_train(tmp_path / "split", "--env", "hmbrl/GridFourRooms-v0", "--steps", "200") == 0
    assert run_train(tmp_path / "split", "--resume", "--steps", "300") == 0
    assert totals(tmp_path / "split") == totals(tmp_path / "whole")
