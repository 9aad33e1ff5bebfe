"""A background-activity filter: drop events that no neighbouring pixel supports.

Shot noise fires pixels one at a time, while a moving edge fires neighbouring pixels within a short
time of each other. The background-activity filter (Delbruck 2008, the denoiser of jAER and v2e)
keeps an event only if one of its 8 neighbouring pixels (not the pixel itself) fired less than
``filter_time`` seconds before it, counting every earlier event, kept or not. Earlier means earlier
in the stream's order, so of two simultaneous neighbours the second is supported by the first. The
memory of when each pixel last fired spans steps and is cleared by `reset`, at the start of an
episode, where the camera's clock restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # envs.event_camera builds the filter, so it is not imported here at run time
    from envs.event_camera import Events

_NEIGHBOURS = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0))


class BackgroundActivityFilter:
    """Filters each step's time-sorted `Events` against the support of the pixels around them."""

    def __init__(self, filter_time: float, image_size: tuple[int, int]):
        if filter_time <= 0:
            raise ValueError(f"filter_time must be > 0 seconds, got {filter_time}")
        self.filter_time = float(filter_time)
        self.height, self.width = (int(side) for side in image_size)
        self.reset()

    def reset(self) -> None:
        """Forget every pixel's last event (the clock restarts at 0 with each episode)."""
        self._last = np.full(self.height * self.width, -np.inf)

    def __call__(self, events: Events) -> Events:
        """The supported events of one step, in their order; remembers all of them."""
        count = events.count
        if count == 0:
            return events
        pixel = events.y.astype(np.int64) * self.width + events.x
        # Each event's latest earlier event at a given pixel within this step: search the events
        # sorted by (pixel, rank) for the last key below (that pixel, this event's rank).
        rank = np.arange(count)
        keys = np.sort(pixel * count + rank)
        supported = np.zeros(count, bool)
        for dx, dy in _NEIGHBOURS:
            x, y = events.x + dx, events.y + dy
            inside = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
            neighbour = np.where(inside, y.astype(np.int64) * self.width + x, 0)
            found = np.searchsorted(keys, neighbour * count + rank) - 1
            key = keys[np.maximum(found, 0)]
            in_step = (found >= 0) & (key // count == neighbour)
            previous = np.where(in_step, events.t[key % count], self._last[neighbour])
            supported |= inside & (events.t - previous < self.filter_time)
        np.maximum.at(self._last, pixel, events.t)
        return events._make(field[supported] for field in events)
