"""Several seeds of one config trained in one process, their updates and acting vmapped.

Each seed is a whole `agents.trainer.Trainer` in its own run directory: its environments, replay,
collector, RNG streams, logger and checkpoints, exactly as a single-seed run has them, so every
seed's directory can be evaluated or resumed alone afterwards. This driver only replaces the two
jitted calls: it keeps the seeds' train and policy states stacked on a leading seed axis and calls
``agents.seed_stack.SeedStack``'s vmapped steps once for all seeds. The seeds share every loop
setting (environments, prefill, train ratio, batch), so they are due the same updates at the same
steps and advance in lockstep.

The per-seed trainers read their own ``state``, ``policy_state`` and ``act_key`` only to evaluate,
log images and checkpoint: the stacked states are split back into them just before those steps.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from agents.metrics_window import Counters
from agents.parallel import DataParallel
from agents.seed_stack import SeedStack, seed_slice, stack, stack_host, unstack
from agents.stop_request import StopRequest
from agents.run_errors import NonFiniteEnvironmentError, NonFiniteLossError
from agents.trainer import Trainer, VectorEnvFactory
from configs.loader import diff

# Keys that may differ between the seeds of one multi-seed run; all else is shared.
PER_SEED_KEYS = ("seed", "logdir")


class SeedStackError(ValueError):
    """Seeds that cannot train together in one process; the message says why and what to do."""


def check_seed_configs(configs: Sequence[Mapping[str, Any]]) -> None:
    """Refuse seeds that cannot be stacked: repeated seeds, configs that differ in more than the
    seed, or data parallelism (vmapping over seeds is not combined with the device mesh)."""
    seeds = [config["seed"] for config in configs]
    if len(set(seeds)) != len(seeds):
        raise SeedStackError(f"seeds {seeds} repeat a seed: each seed must be given once")
    for config in configs[1:]:
        changes = {key: change for key, change in diff(configs[0], config).items() if key not in PER_SEED_KEYS}
        if changes:
            lines = ", ".join(f"{key}: {old!r} vs {new!r}" for key, (old, new) in changes.items())
            raise SeedStackError(f"seeds trained together must share one config apart from the seed; "
                                 f"seed {config['seed']} differs from seed {seeds[0]} in {lines}")
    parallel = DataParallel.from_config(configs[0])
    if parallel.enabled:
        raise SeedStackError(
            f"several seeds in one process cannot also train data-parallel ({parallel.num_devices} devices over "
            f"{parallel.process_count} process(es)): the seeds' vmapped update is not split over the device "
            "mesh. Set parallel.devices=1 and leave out --distributed, or train each seed as its own run.")


class MultiSeedTrainer:
    """Trains one config on several seeds in one process (see the module docstring).

    Args:
      configs: the resolved config of each seed (the same but for ``seed`` and ``logdir``).
      logdirs: each seed's run directory.
      make_envs: ``num_envs -> vector env``, shared by the seeds (each seeds its own envs).
      say: where status lines go; each seed's lines start with ``[seed S]``.
      progress: a progress bar (the first seed's).
    """

    def __init__(self, configs: Sequence[Mapping[str, Any]], logdirs: Sequence[str | Path],
                 make_envs: VectorEnvFactory, say: Callable[[str], None] = print, progress: bool = True):
        check_seed_configs(configs)
        self.say, self.trainers = say, []
        try:
            for config, logdir in zip(configs, logdirs, strict=True):
                shared = self.trainers[0].agent if self.trainers else None  # one agent: one compilation
                self.trainers.append(Trainer(
                    config, logdir, make_envs, say=_prefixed(say, f"[seed {config['seed']}] "),
                    progress=progress and not self.trainers, agent=shared, runs_in_process=len(configs)))
        except BaseException:
            self._close()
            raise
        self.lead = self.trainers[0]
        self.seeds = SeedStack(self.lead.agent)
        self.stopped_by: str | None = None

    def run(self, steps: int, resume: bool = False) -> list[Counters]:
        """Train every seed until ``steps`` environment steps; returns each seed's counters. Ctrl-C
        or SIGTERM stops all seeds at the end of the iteration with a checkpoint each."""
        stop = StopRequest(self.say)
        try:
            for trainer in self.trainers:
                trainer.begin(steps, resume)
            self._check_in_step()
            self._stack()
            with stop:
                self._update()  # updates still due when the checkpoints were taken
                while self.lead.counters.env_steps < steps and not stop.requested:
                    self._collect()
                    self._update()
                    self._after_step()
            self._unstack()
            for trainer in self.trainers:
                trainer.finish(stop.requested)
            self.stopped_by = stop.requested
        finally:
            self._close()
        return [trainer.counters for trainer in self.trainers]

    def _check_in_step(self) -> None:
        """Resumed seeds must continue from the same step (their checkpoints are taken together;
        a kill between two seeds' saves can leave one behind)."""
        steps = {trainer.config["seed"]: trainer.counters.env_steps for trainer in self.trainers}
        if len(set(steps.values())) > 1:
            where = ", ".join(f"seed {seed} at {step:,}" for seed, step in steps.items())
            raise SeedStackError(
                f"the seeds' last checkpoints are at different steps ({where}): resume the ones behind alone "
                f"(--resume --logdir <its directory> --steps {max(steps.values())}), then resume them together")

    def _collect(self) -> None:
        """One environment step of every seed, acting for all seeds in one vmapped call."""
        pending = [trainer.collector.pending() for trainer in self.trainers]
        is_first = np.stack([first for _, first in pending])
        if self.lead.counters.env_steps < self.lead.sections.run.prefill:
            actions = np.stack([trainer.action_layout.random(trainer.rng, len(first))
                                for trainer, (_, first) in zip(self.trainers, pending)])
            self.policy_state, self.act_keys = self.seeds.prefill_step(self.policy_state, is_first, self.act_keys)
        else:
            obs = stack_host([obs for obs, _ in pending])
            actions, self.policy_state, self.act_keys = self.lead.timed(
                f"policy_step over {len(self.trainers)} seeds", self.seeds.policy_step,
                self.state, self.policy_state, obs, is_first, self.act_keys)
            actions = np.asarray(actions)
        extras = self.lead.agent.replay_extras(self.policy_state)
        for index, trainer in enumerate(self.trainers):
            layout, action = trainer.action_layout, actions[index]
            with _naming_seed(trainer):
                trainer.collect(lambda obs, first: (action, layout.to_env(action)), seed_slice(extras, index))

    def _update(self) -> None:
        """Every update due, one vmapped train step for all seeds per update."""
        while self._update_due():
            batch = stack_host([trainer.replay.sample() for trainer in self.trainers])
            self.state, metrics = self.lead.timed(f"train_step over {len(self.trainers)} seeds",
                                                   self.seeds.train_step, self.state, batch)
            metrics = jax.device_get(metrics)
            for index, trainer in enumerate(self.trainers):
                with _naming_seed(trainer):
                    trainer.record_update(seed_slice(metrics, index))

    def _update_due(self) -> bool:
        due = {trainer.update_due() for trainer in self.trainers}
        if len(due) > 1:  # lockstep is checked at the start; this would be a bug of ours
            raise RuntimeError("the seeds fell out of step: some are due an update and some not")
        return due.pop()

    def _after_step(self) -> None:
        if self.lead.needs_state():  # the same step for every seed: their counters are equal
            self._unstack()
        for trainer in self.trainers:
            trainer.after_step()

    def _stack(self) -> None:
        self.state = stack([trainer.state for trainer in self.trainers])
        self.policy_state = stack([trainer.policy_state for trainer in self.trainers])
        self.act_keys = stack([trainer.act_key for trainer in self.trainers])

    def _unstack(self) -> None:
        count = len(self.trainers)
        parts = zip(self.trainers, unstack(self.state, count), unstack(self.policy_state, count),
                    unstack(self.act_keys, count))
        for trainer, state, policy_state, act_key in parts:
            trainer.state, trainer.policy_state, trainer.act_key = state, policy_state, act_key

    def _close(self) -> None:
        for trainer in self.trainers:
            trainer.close()


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda line: say(prefix + line)


@contextlib.contextmanager
def _naming_seed(trainer: Trainer) -> Iterator[None]:
    """Errors that stop the run say which seed raised them (all seeds stop; their checkpoints stay)."""
    try:
        yield
    except (NonFiniteLossError, NonFiniteEnvironmentError) as error:
        raise type(error)(f"seed {trainer.config['seed']}: {error}") from None
