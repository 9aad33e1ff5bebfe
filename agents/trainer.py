"""The training loop: collect with the policy, store in replay, update at a fixed train ratio.

A short Python driver around the two jitted functions of the agent. Everything a resumed run
needs comes back from the checkpoint: parameters, optimiser states, RNG keys, the replay and its
position, and the counters (environment steps, updates, episodes) from which the number of updates
due is computed, so the train ratio continues exactly, with no burst of catch-up updates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import jax
import numpy as np
from tqdm import tqdm

from agents.compile_timer import CompileTimer
from agents.coverage import CoverageMeter
from agents.hierarchical_agent import HierarchicalAgent, HierarchicalTrainState
from agents.evaluation import log_evaluation
from agents.logging import Logger
from agents.metrics_window import Counters, MetricsWindow
from agents.parallel import DataParallel
from agents.replay import Replay
from agents.resources import check_run_fits
from agents.run_checkpoint import RunCheckpoint
from agents.run_description import run_description
from agents.run_errors import first_nonfinite, nonfinite_environment_error, nonfinite_loss_error
from agents.schedule import crossed_multiple, reached, updates_due
from agents.spaces import replay_spec
from agents.state_probe import NoSourceObservation, check_probe_env
from agents.stop_request import StopRequest
from configs.loader import ConfigError
from configs.sections import as_kwargs, run_sections
from envs.collector import Collector, NonFiniteObservationError, PolicyFn

VectorEnvFactory = Callable[[int], gym.vector.VectorEnv]


def check_state_probe(make_envs: VectorEnvFactory, steps: int, env_id: str) -> None:
    """Refuse ``run.state_probe_steps`` before training where the env has no state for the probe to find."""
    envs = make_envs(1)
    try:
        check_probe_env(envs)
    except NoSourceObservation as error:
        raise ConfigError(f"run.state_probe_steps={steps} with {env_id}: {error}; or set run.state_probe_steps=0"
                          ) from None
    finally:
        envs.close()


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

    def __init__(self, config: Mapping[str, Any], logdir: str | Path, make_envs: VectorEnvFactory,
                 say: Callable[[str], None] = print, progress: bool = True, agent: HierarchicalAgent | None = None,
                 runs_in_process: int = 1):
        self.config, self.logdir, self.say, self.progress = config, Path(logdir), say, progress
        self.sections = run_sections(config)  # the run, replay and parallel sections, typed
        self.parallel = DataParallel.from_config(config)  # one device and one process: a no-op
        self.logdir = self.parallel.process_logdir(logdir)  # process i > 0 keeps its shard apart
        run = self.sections.run
        if run.state_probe_steps:
            check_state_probe(make_envs, run.state_probe_steps, str(config["env_id"]))
        self.make_envs = make_envs
        self.envs = make_envs(run.num_envs)
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
        self.replay = self._open_replay(runs_in_process)
        self.collector = Collector(self.envs, self.action_layout.dim, self.obs_layout.to_dict,
                                   nonfinite=run.nonfinite, name=str(config["env_id"]))
        self.policy_state = self.agent.initial_policy_state(self.parallel.acting_view(self.state), run.num_envs)
        self.coverage = CoverageMeter()  # logs only for envs with info["cell"]
        self.checkpoint = RunCheckpoint(self.logdir, run.keep_checkpoints)
        self.counters = Counters()
        self.start_time = time.time()  # minus the seconds of earlier sessions once resumed (``begin``)
        # Replayed steps per update that count against this process's env steps: its part of the
        # global batch, so the train ratio holds for the whole run.
        self.batch_steps = self.parallel.local_batch_size * self.sections.replay.batch_length
        self.timed = CompileTimer(say)  # calls a jitted function, announcing its first compilation
        self.stopped_by: str | None = None  # the signal's name after a stop requested by one
        self.logger: Logger | None = None  # open from ``begin`` to ``close``
        self.bar: tqdm | None = None
        self.window = MetricsWindow(self.counters)

    def _open_replay(self, runs_in_process: int) -> Replay:
        """This process's replay (its part of the global batch), once the run is known to fit."""
        spec = {**replay_spec(self.obs_layout, self.action_layout.dim), **self.agent.replay_fields()}
        check_run_fits(self.config, spec, self.logdir, runs_in_process)
        return Replay(spec, self.sections.run.num_envs, seed=self.local_seed, directory=self.logdir / "replay",
                      **{**as_kwargs(self.sections.replay), "batch_size": self.parallel.local_batch_size})

    # ----------------------------------------------------------------------------- checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        return {"train": self.state, "act_key": self.act_key, "policy": self.policy_state}

    def save(self) -> None:
        if self.checkpoint.latest_step() == self.counters.env_steps:
            return  # this step is already saved (a periodic save that coincides with the end)
        self.replay.flush()
        self.counters.seconds = time.time() - self.start_time
        if self.logger is not None:  # a resumed run continues the logs from this step: they must be on disk
            self.logger.flush()
        self.checkpoint.save(self.counters, self._checkpoint_state(), self.replay, self.rng, self.envs,
                             self.collector.snapshot(), self.coverage)

    def restore(self) -> bool:
        """Load the latest checkpoint if there is one; returns whether it did."""
        if self.checkpoint.latest_step() is None:
            return False
        state, self.counters, snapshot = self.checkpoint.restore(self._checkpoint_state(), self.replay, self.rng,
                                                                 self.coverage)
        self.state, self.act_key, self.policy_state = state["train"], state["act_key"], state["policy"]
        self.state = self.parallel.replicate(self.state)
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
        if self.counters.env_steps < self.sections.run.prefill:
            action = self.action_layout.random(self.rng, len(is_first))
            self.act_key, key = jax.random.split(self.act_key)
            self.policy_state = self.agent.prefill_step(self.policy_state, is_first, key)  # the levels' clocks
        else:
            self.act_key, key = jax.random.split(self.act_key)
            action, self.policy_state = self.timed(
                "policy_step", self.agent.policy_step, self.parallel.acting_view(self.state), self.policy_state,
                obs, is_first, key
            )
            action = np.asarray(action)
        return action, self.action_layout.to_env(action)

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
            self.say(f"--resume: no checkpoint in {self.checkpoint.directory} yet (the run ended before "
                     f"its first, due at step {self.sections.run.checkpoint_every:,}): starting from step 0")
        if not resumed:
            for line in run_description(self.config, self.parallel, self.agent.parameter_counts(self.state),
                                        self.obs_layout, self.action_layout, self.replay):
                self.say(line)
            self.collector.reset(seed=self.local_seed)
            self.policy_state = self.agent.initial_policy_state(self.parallel.acting_view(self.state), self.collector.num_envs)
        # Logs written after the checkpoint by an interrupted run are dropped; this run rewrites them.
        self.logger = Logger(self.logdir, resume_step=self.counters.env_steps, enabled=self.parallel.is_main)
        if self.counters.env_steps < self.sections.run.prefill:
            self.say(f"prefilling replay with {self.sections.run.prefill:,} random-policy steps ...")
        self.bar = tqdm(total=steps, initial=self.counters.env_steps, unit="step", disable=not self.progress,
                        dynamic_ncols=True, smoothing=0.05)
        self.window = MetricsWindow(self.counters)
        self.start_time = time.time() - self.counters.seconds

    def after_step(self) -> None:
        """The periodic work after an iteration: logs, evaluation, images and checkpoints."""
        self._maybe_log(self.logger, self.window, self.bar)
        if self._crossed(self.sections.run.eval_every) and self.parallel.is_main:
            self.evaluate(self.logger)
        if self._crossed(self.sections.run.video_every) and self.obs_layout.decoded_images and self.parallel.is_main:
            self.log_images(self.logger)
        if self._crossed(self.sections.run.checkpoint_every):
            self.save()

    def needs_state(self) -> bool:
        """Whether ``after_step`` will read the train or policy state (evaluate, images, checkpoint)."""
        run = self.sections.run
        return any(self._crossed(every) for every in (run.eval_every, run.video_every, run.checkpoint_every))

    def finish(self, stopped_by: str | None) -> None:
        """The final checkpoint; ``stopped_by`` names the signal that stopped the run, if one did."""
        self.save()
        self.stopped_by = stopped_by

    def close(self) -> None:
        """Release what ``__init__`` and ``begin`` opened (also after a failure part-way)."""
        if self.bar is not None:
            self.bar.close()
        self.checkpoint.close()
        if self.logger is not None:
            self.logger.close()
        self.envs.close()

    def evaluate(self, logger: Logger) -> None:
        """Greedy evaluation and diagnosis episodes, logged (``agents.evaluation.log_evaluation``)."""
        log_evaluation(logger, self.counters.env_steps, self.agent, self.parallel.acting_view(self.state),
                       self.make_envs, self.config, self.start_time)

    def log_images(self, logger: Logger) -> None:
        """Observation vs reconstruction of each image key, as ``level0/world_model/reconstruction/<key>``."""
        if not self.replay.can_sample():
            return
        batch = self.replay.sample(np.random.default_rng(self.counters.env_steps))  # not the training stream
        images = self.agent.reconstruction_images(self.parallel.acting_view(self.state), batch)
        for key, image in jax.device_get(images).items():
            logger.image(f"level0/world_model/reconstruction/{key}", image, self.counters.env_steps)

    def _crossed(self, every: int) -> bool:
        """Whether the last collection step crossed a multiple of ``every`` environment steps."""
        now = self.counters.env_steps
        return crossed_multiple(every, now - self.collector.num_envs, now)

    def collect(self, policy: PolicyFn | None = None, extras: Mapping[str, np.ndarray] | None = None) -> None:
        """One step of every environment, stored in replay. ``policy`` and ``extras`` (its replay
        fields) stand in for this trainer's own policy when acting happened elsewhere (the
        multi-seed driver acts for all its seeds in one vmapped call)."""
        try:
            record, episodes = self.collector.step(policy or self._policy)
        except NonFiniteObservationError as error:
            raise nonfinite_environment_error(error, self.counters.env_steps + self.collector.num_envs,
                                              self.checkpoint.status()) from None
        extras = self.agent.replay_extras(self.policy_state) if extras is None else extras
        self.replay.add({**record, **extras})
        self.coverage.observe(self.collector.cells)
        self.counters.env_steps += self.collector.num_envs
        self.bar.update(self.collector.num_envs)
        if reached(self.sections.run.prefill, self.counters.env_steps - self.collector.num_envs,
                   self.counters.env_steps):
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
            self.state, metrics = self.timed("train_step", self.train_step, self.state, batch)
            self.record_update(metrics)

    def update_due(self) -> bool:
        """Whether an update is due: the train ratio asks for one and the replay can give a batch."""
        run = self.sections.run
        due = updates_due(self.counters.env_steps, run.prefill, run.train_ratio, self.batch_steps)
        return self.counters.updates < due and self.replay.can_sample()

    def record_update(self, metrics: Mapping[str, Any]) -> None:
        """Count an update and keep its metrics; stops the run at a non-finite one."""
        metrics = jax.device_get(metrics)
        bad = first_nonfinite(metrics)
        if bad is not None:
            raise nonfinite_loss_error(bad, metrics[bad], self.counters.updates + 1, self.counters.env_steps,
                                       self.checkpoint.status())
        self.counters.updates += 1
        self.window.add(metrics)

    def _maybe_log(self, logger: Logger, window: MetricsWindow, bar: tqdm) -> None:
        if not self._crossed(self.sections.run.log_every):
            return
        scalars = window.summary(self.counters)
        scalars["throughput/env_worker_restarts"] = getattr(self.envs, "worker_restarts", 0)
        scalars.update(self.coverage.scalars())
        logger.scalars(scalars, self.counters.env_steps)
        bar.set_postfix(window.progress_postfix(scalars), refresh=False)
        window.reset(self.counters)
