"""How much of the state space the agent visits, for environments that name their cells.

An environment that puts a hashable ``info["cell"]`` in its infos (``envs.grid_rooms``) gets two
scalars: the distinct cells of the last ``window`` environment steps, over all sub-environments, and
the distinct cells since the run started. Exploration that stalls in one room shows as a flat total
long before the return says anything. Environments without cells log nothing. The meter is saved
with each checkpoint where its cells are JSON scalars or tuples of them (as GridFourRooms' are), so a
resumed run continues its total; otherwise a resumed run counts from the resume.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Hashable, Iterable

import numpy as np


def as_hashable(cell) -> Hashable:
    """A cell as a set member: numpy arrays (and lists) become tuples of Python scalars."""
    if isinstance(cell, (np.ndarray, list)):
        return tuple(np.asarray(cell).tolist())
    return cell


class CoverageMeter:
    """Args:
      window: environment steps the recent count looks back over (one cell per sub-environment step).
    """

    def __init__(self, window: int = 1000):
        if window <= 0:
            raise ValueError(f"the coverage window must be positive, got {window}")
        self.window = window
        self.recent: deque[Hashable] = deque(maxlen=window)
        self.seen: set[Hashable] = set()

    def observe(self, cells: Iterable[Hashable | None]) -> None:
        """The cells of one vector step, one per sub-environment; None where one has no cell."""
        for cell in cells:
            if cell is None:
                continue
            cell = as_hashable(cell)
            self.recent.append(cell)
            self.seen.add(cell)

    def scalars(self) -> dict[str, float]:
        """``coverage/cells_per_1k_steps`` (the window's size in the name) and ``coverage/cells_total``;
        empty until a cell was observed, so environments without cells log nothing."""
        if not self.seen:
            return {}
        return {f"coverage/cells_per_{_steps_name(self.window)}_steps": float(len(set(self.recent))),
                "coverage/cells_total": float(len(self.seen))}


    def state_dict(self) -> dict[str, list] | None:
        """The cells seen, JSON-able (tuples become lists); None where a cell is not JSON."""
        state = {"recent": [_to_json(cell) for cell in self.recent], "seen": [_to_json(cell) for cell in self.seen]}
        try:
            json.dumps(state)
        except (TypeError, ValueError):
            return None
        return state

    def load_state_dict(self, state: dict[str, list]) -> None:
        self.recent = deque((_from_json(cell) for cell in state["recent"]), maxlen=self.window)
        self.seen = {_from_json(cell) for cell in state["seen"]}


def _to_json(cell: Hashable) -> Any:
    return [_to_json(part) for part in cell] if isinstance(cell, tuple) else cell


def _from_json(cell: Any) -> Hashable:
    return tuple(_from_json(part) for part in cell) if isinstance(cell, list) else cell


def _steps_name(steps: int) -> str:
    return f"{steps // 1000}k" if steps % 1000 == 0 else str(steps)
