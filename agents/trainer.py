"""The training loop: collect with the policy, store in replay, update at a fixed train ratio.

A short Python driver around the two jitted functions of the agent. Everything a resumed run
needs comes back from the checkpoint: parameters, optimiser states, RNG keys, the replay and its
position, and the counters (environment steps, updates, episodes) from which the number of updates
due is computed, so the train ratio continues exactly, with no burst of catch-up updates.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import jax
import numpy as np
from tqdm import tqdm

from agents.checkpoint import open_checkpointer
from agents.coverage import CoverageMeter
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.env_snapshots import EnvSnapshots
from agents.evaluation import evaluation_pass
from agents.logging import Logger
from agents.metrics_window import Counters, MetricsWindow
from agents.parallel import DataParallel
from agents.replay import Replay
from agents.resources import check_run_fits
from agents.run_errors import LOSS_REMEDY, NonFiniteEnvironmentError, NonFiniteLossError, first_nonfinite
from agents.spaces import replay_spec
from agents.stop_request import StopRequest
from envs.collector import Collector, NonFiniteObservationError, PolicyFn

VectorEnvFactory = Callable[[int], gym.vector.VectorEnv]


def updates_due(env_steps: int, prefill: int, train_ratio: float, batch_steps: int) -> int:
    """Updates that should have run after ``env_steps``: ``train_ratio`` replayed steps per
    environment step once the replay is prefilled, each update replaying ``batch_steps`` steps."""
    if env_steps < prefill:
        return 0
    return int(math.floor((env_steps - prefill) * train_ratio / batch_steps)) + 1


class Trainer:
    """Builds the agent, replay and logger of one run and runs it.

    Args:
      config: the resolved config (``configs.loader.load_config``).
      logdir: the run directory (checkpoints, TensorBoard, ``metrics.jsonl``, disk replay).
      make_envs: ``num_envs -> vector env`` (see ``envs.vector.make_vector_env``).
      say: where status lines go (``print`` by default).
      agent: an agent built for this config's spaces to share (a multi-seed run shares one, so that
        its jitted functions compile once); by default the trainer builds its own.
      runs_in_process: runs this process holds side by side (seeds of ``agents.multi_seed``), for
        the memory and disk check.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        logdir: str | Path,
        make_envs: VectorEnvFactory,
        say: Callable[[str], None] = print,
        progress: bool = True,
        agent: HierarchicalAgent | None = None,
        runs_in_process: int = 1,
    ):
        self.config, self.logdir, self.say, self.progress = config, Path(logdir), say, progress
        self.parallel = DataParallel.from_config(config)  # one device and one process: a no-op
        self.logdir = self.parallel.process_logdir(logdir)  # process i > 0 keeps its shard apart
        run = config["run"]
        self.make_envs = make_envs
        self.envs = make_envs(run["num_envs"])
        self.agent = agent or HierarchicalAgent.from_config(
            config, self.envs.single_observation_space, self.envs.single_action_space
        )
        self.obs_layout, self.action_layout = self.agent.obs_layout, self.agent.action_layout
        seed = int(config["seed"])
        self.local_seed = seed + self.parallel.seed_offset  # envs, replay, exploration: per process
        self.rng = np.random.default_rng(self.local_seed)
        self.state: HierarchicalTrainState = self.parallel.replicate(self.agent.init(jax.random.PRNGKey(seed)))
        self.train_step = self.parallel.train_step(self.agent.train_step)
        self.act_key = jax.random.PRNGKey(self.local_seed + 1)
        spec = {**replay_spec(self.obs_layout, self.action_layout.dim), **self.agent.replay_fields()}
        check_run_fits(config, spec, self.logdir, runs_in_process)
        self.replay = Replay(
            spec, run["num_envs"], seed=self.local_seed,
            directory=self.logdir / "replay", **{**config["replay"], "batch_size": self.parallel.local_batch_size},
        )
        self.collector = Collector(self.envs, self.action_layout.dim, self.obs_layout.to_dict,
                                   nonfinite=run["nonfinite"], name=str(config["env_id"]))
        self.policy_state = self.agent.initial_policy_state(self.parallel.acting_view(self.state), run["num_envs"])
        self.coverage = CoverageMeter()  # logs only for envs with info["cell"]
        self.checkpointer = open_checkpointer(self.logdir / "checkpoints", run["keep_checkpoints"])
        self.env_snapshots = EnvSnapshots(self.logdir / "env_snapshots")
        self.counters = Counters()
        # Replayed steps per update that count against this process's env steps: its part of the
        # global batch, so the train ratio holds for the whole run.
        self.batch_steps = self.parallel.local_batch_size * config["replay"]["batch_length"]
        self.compiled: set[str] = set()
        self.stopped_by: str | None = None  # the signal's name after a stop requested by one
        self.logger: Logger | None = None  # open from ``begin`` to ``close``
        self.bar: tqdm | None = None
        self.window = MetricsWindow(self.counters)

    # ----------------------------------------------------------------------------- set-up lines
    def describe(self) -> None:
        devices = jax.devices()
        seed = int(self.config["seed"])
        self.say(f"seed {seed}: JAX keys, NumPy, env i gets {seed} + i, evaluation envs {seed + 10_000}")
        self.say(f"JAX devices: {', '.join(str(d) for d in devices)} (backend {jax.default_backend()})")
        for line in self.parallel.describe():
            self.say(line)
        if self.config["run"]["gpu_recommended"] and jax.default_backend() == "cpu":
            self.say("WARNING: this preset is meant for a GPU but runs on the CPU: expect it to be very slow.")
        counts = self.agent.parameter_counts(self.state)
        self.say("parameters: " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
        self.say(f"observations: mlp {self.obs_layout.mlp_shapes} cnn {self.obs_layout.cnn_shapes}; "
                 f"actions: {'discrete' if self.action_layout.discrete else 'continuous'} {self.action_layout.dim}")
        size = self.replay.nbytes / 2**20
        where = "on disk (memory-mapped)" if self.replay.storage == "disk" else "in memory"
        self.say(f"replay: {self.replay.length * self.replay.num_envs:,} steps, {size:,.1f} MiB {where} at capacity")

    # ----------------------------------------------------------------------------- checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        return {"train": self.state, "act_key": self.act_key, "policy": self.policy_state}

    def save(self) -> None:
        if self.checkpointer.latest_step() == self.counters.env_steps:
            return  # this step is already saved (a periodic save that coincides with the end)
        self.replay.flush()
        if self.logger is not None:  # a resumed run continues the logs from this step: they must be on disk
            self.logger.flush()
        meta = {
            "counters": dataclasses.asdict(self.counters),
            "replay": self.replay.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
        }
        self.env_snapshots.save(self.counters.env_steps, self.envs, self.collector.snapshot(),
                                self.checkpointer.manager.all_steps())
        self.checkpointer.save(self.counters.env_steps, self._checkpoint_state(), self.replay.data(), meta)

    def restore(self) -> bool:
        """Load the latest checkpoint if there is one; returns whether it did."""
        if self.checkpointer.latest_step() is None:
            return False
        saved_count = self.checkpointer.meta()["replay"]["count"]
        state, replay_data, meta = self.checkpointer.restore(self._checkpoint_state(),
                                                             self.replay.data_template(saved_count))
        self.state, self.act_key, self.policy_state = state["train"], state["act_key"], state["policy"]
        self.state = self.parallel.replicate(self.state)
        self.replay.load_state_dict(meta["replay"], replay_data)
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.counters = Counters(**meta["counters"])
        snapshot = self.env_snapshots.load(self.counters.env_steps)
        if snapshot is not None:
            self.envs.close()
            self.envs, collector_state = snapshot
            self.collector.env = self.envs
            self.collector.restore(collector_state)
            how = "environments continue their episodes"
        else:
            self.collector.reset(seed=self.local_seed + self.counters.env_steps)
            self.policy_state = self.agent.initial_policy_state(self.parallel.acting_view(self.state), self.collector.num_envs)
            how = "environments restarted (their state could not be saved)"
        self.say(f"resumed from step {self.counters.env_steps:,} ({self.counters.updates:,} updates, "
                 f"{len(self.replay):,} replay steps); {how}")
        return True

    # ----------------------------------------------------------------------------- acting
    def _policy(self, obs: dict[str, np.ndarray], is_first: np.ndarray):
        if self.counters.env_steps < self.config["run"]["prefill"]:
            action = self.action_layout.random(self.rng, len(is_first))
            self.act_key, key = jax.random.split(self.act_key)
            self.policy_state = self.agent.prefill_step(self.policy_state, is_first, key)  # the levels' clocks
        else:
            self.act_key, key = jax.random.split(self.act_key)
            action, self.policy_state = self._timed(
                "policy_step", self.agent.policy_step, self.parallel.acting_view(self.state), self.policy_state,
                obs, is_first, key
            )
            action = np.asarray(action)
        return action, self.action_layout.to_env(action)

    def _timed(self, name: str, function, *args):
        """Call a jitted function; the first call announces and times its compilation."""
        if name in self.compiled:
            return function(*args)
        self.say(f"compiling {name} ...")
        start = time.time()
        result = jax.block_until_ready(function(*args))
        self.say(f"compiled {name} in {time.time() - start:.1f}s")
        self.compiled.add(name)
        return result

    # ----------------------------------------------------------------------------- the loop
    def run(self, steps: int, resume: bool = False) -> Counters:
        """Train until ``steps`` environment steps; returns the final counters.

        Ctrl-C or SIGTERM stops the run at the end of the current iteration, saves a checkpoint and
        sets ``stopped_by`` (a second Ctrl-C aborts at once); after a kill, ``resume`` continues from
        the last checkpoint.
        """
        self.begin(steps, resume)
        stop = StopRequest(self.say)
        try:
            with stop:
                self.update()  # updates still due when the checkpoint was taken
                # With several processes all must stop at the same iteration (updates are collective).
                while self.counters.env_steps < steps and not self.parallel.any_process(stop.requested):
                    self.collect()
                    self.update()
                    self.after_step()
            self.finish(stop.requested)
        finally:
            self.close()
        return self.counters

    # The loop's stages, public so that ``agents.multi_seed`` drives several trainers in lockstep.
    def begin(self, steps: int, resume: bool) -> None:
        """Restore the last checkpoint (``resume``) or reset the environments, then open the logs."""
        resumed = resume and self.restore()
        if resume and not resumed:
            self.say(f"--resume: no checkpoint in {self.checkpointer.directory} yet (the run ended before "
                     f"its first, due at step {self.config['run']['checkpoint_every']:,}): starting from step 0")
        if not resumed:
            self.describe()
            self.collector.reset(seed=self.local_seed)
            self.policy_state = self.agent.initial_policy_state(self.parallel.acting_view(self.state), self.collector.num_envs)
        # Logs written after the checkpoint by an interrupted run are dropped; this run rewrites them.
        self.logger = Logger(self.logdir, resume_step=self.counters.env_steps, enabled=self.parallel.is_main)
        prefill = self.config["run"]["prefill"]
        if self.counters.env_steps < prefill:
            self.say(f"prefilling replay with {prefill:,} random-policy steps ...")
        self.bar = tqdm(total=steps, initial=self.counters.env_steps, unit="step", disable=not self.progress,
                        dynamic_ncols=True, smoothing=0.05)
        self.window = MetricsWindow(self.counters)
        self.start_time = time.time()

    def after_step(self) -> None:
        """The periodic work after an iteration: logs, evaluation, images and checkpoints."""
        self._maybe_log(self.logger, self.window, self.bar)
        if self._crossed(self.config["run"]["eval_every"]) and self.parallel.is_main:
            self.evaluate(self.logger)
        if self._crossed(self.config["run"]["video_every"]) and self.obs_layout.cnn_shapes and self.parallel.is_main:
            self.log_images(self.logger)
        if self._crossed(self.config["run"]["checkpoint_every"]):
            self.save()

    def needs_state(self) -> bool:
        """Whether ``after_step`` will read the train or policy state (evaluate, images, checkpoint)."""
        run = self.config["run"]
        return any(self._crossed(run[key]) for key in ("eval_every", "video_every", "checkpoint_every"))

    def finish(self, stopped_by: str | None) -> None:
        """The final checkpoint; ``stopped_by`` names the signal that stopped the run, if one did."""
        self.save()
        self.stopped_by = stopped_by

    def close(self) -> None:
        """Release what ``__init__`` and ``begin`` opened (also after a failure part-way)."""
        if self.bar is not None:
            self.bar.close()
        self.checkpointer.close()
        if self.logger is not None:
            self.logger.close()
        self.envs.close()

    def evaluate(self, logger: Logger) -> None:
        """Greedy evaluation and diagnosis episodes (``agents.evaluation.evaluation_pass``), logged."""
        scalars, images = evaluation_pass(self.agent, self.parallel.acting_view(self.state), self.make_envs,
                                          self.config)
        scalars["eval/elapsed_seconds"] = time.time() - self.start_time
        logger.scalars(scalars, self.counters.env_steps)
        for name, image in images.items():
            logger.image(name, image, self.counters.env_steps)

    def log_images(self, logger: Logger) -> None:
        """Observation vs reconstruction of each image key, as ``level0/world_model/reconstruction/<key>``."""
        if not self.replay.can_sample():
            return
        batch = self.replay.sample(np.random.default_rng(self.counters.env_steps))  # not the training stream
        images = self.agent.reconstruction_images(self.parallel.acting_view(self.state), batch)
        for key, image in jax.device_get(images).items():
            logger.image(f"level0/world_model/reconstruction/{key}", image, self.counters.env_steps)

    def _crossed_value(self, value: int) -> bool:
        """Whether the last collection step reached ``value`` environment steps."""
        return self.counters.env_steps - self.collector.num_envs < value <= self.counters.env_steps

    def _crossed(self, every: int) -> bool:
        """Whether the last collection step crossed a multiple of ``every`` environment steps."""
        if every <= 0:
            return False
        now, before = self.counters.env_steps, self.counters.env_steps - self.collector.num_envs
        return now // every > before // every

    def collect(self, policy: PolicyFn | None = None, extras: Mapping[str, np.ndarray] | None = None) -> None:
        """One step of every environment, stored in replay. ``policy`` and ``extras`` (its replay
        fields) stand in for this trainer's own policy when acting happened elsewhere (the
        multi-seed driver acts for all its seeds in one vmapped call)."""
        try:
            record, episodes = self.collector.step(policy or self._policy)
        except NonFiniteObservationError as error:
            raise NonFiniteEnvironmentError(
                f"{error} at environment step {self.counters.env_steps + self.collector.num_envs:,}. "
                f"Nothing of that step was stored; {self._last_checkpoint_text()}. Fix the environment, "
                "or set run.nonfinite=drop_episode (also with --resume) to end such episodes there and go on."
            ) from None
        extras = self.agent.replay_extras(self.policy_state) if extras is None else extras
        self.replay.add({**record, **extras})
        self.coverage.observe(self.collector.cells)
        self.counters.env_steps += self.collector.num_envs
        self.bar.update(self.collector.num_envs)
        if self._crossed_value(self.config["run"]["prefill"]):
            self.say(f"prefill done: {len(self.replay):,} steps in replay")
        for episode in episodes:
            self.counters.episodes += 1
            self.window.returns.append(episode.score)
            success = {} if episode.success is None else {"episode/success": float(episode.success)}
            self.logger.scalars({"episode/return": episode.score, "episode/length": episode.length, **success},
                                self.counters.env_steps)

    def update(self) -> None:
        """Every update due at the train ratio."""
        while self.update_due():
            batch = self.parallel.shard_batch(self.replay.sample())  # one device, one process: unchanged
            self.state, metrics = self._timed("train_step", self.train_step, self.state, batch)
            self.record_update(metrics)

    def update_due(self) -> bool:
        """Whether an update is due: the train ratio asks for one and the replay can give a batch."""
        config = self.config["run"]
        due = updates_due(self.counters.env_steps, config["prefill"], config["train_ratio"], self.batch_steps)
        return self.counters.updates < due and self.replay.can_sample()

    def record_update(self, metrics: Mapping[str, Any]) -> None:
        """Count an update and keep its metrics; stops the run at a non-finite one."""
        metrics = jax.device_get(metrics)
        bad = first_nonfinite(metrics)
        if bad is not None:
            raise NonFiniteLossError(
                f"training stopped: {bad} = {metrics[bad]} at update {self.counters.updates + 1} "
                f"(environment step {self.counters.env_steps:,}); {self._last_checkpoint_text()}. "
                f"{LOSS_REMEDY}"
            )
        self.counters.updates += 1
        self.window.add(metrics)

    def _last_checkpoint_text(self) -> str:
        step = self.checkpointer.latest_step()
        if step is None:
            return "no checkpoint was written yet"
        return f"the last checkpoint (step {step:,}) in {self.checkpointer.directory} is intact"

    def _maybe_log(self, logger: Logger, window: MetricsWindow, bar: tqdm) -> None:
        if not self._crossed(self.config["run"]["log_every"]):
            return
        scalars = window.summary(self.counters)
        scalars["throughput/env_worker_restarts"] = getattr(self.envs, "worker_restarts", 0)
        scalars.update(self.coverage.scalars())
        logger.scalars(scalars, self.counters.env_steps)
        postfix = {"env/s": f"{scalars['throughput/env_steps_per_second']:.1f}",
                   "train/s": f"{scalars['throughput/train_steps_per_second']:.2f}"}
        if window.last_return is not None:
            postfix["return"] = f"{window.last_return:.1f}"
        bar.set_postfix(postfix, refresh=False)
        window.reset(self.counters)
