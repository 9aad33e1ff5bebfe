"""What one allocation may reserve under each of the kernel's overcommit policies."""

import pytest

import agents.resources as resources

GIB = 2**30
MEMINFO = {"MemTotal": 16 * GIB, "SwapTotal": 2 * GIB, "CommitLimit": 10 * GIB, "Committed_AS": 3 * GIB}


@pytest.mark.parametrize("mode, reservable", [(0, 18 * GIB), (1, None), (2, 7 * GIB), (None, 18 * GIB)])
def test_reservable_memory_follows_the_overcommit_policy(monkeypatch, mode, reservable):
    monkeypatch.setattr(resources, "_meminfo", lambda: dict(MEMINFO))
    monkeypatch.setattr(resources, "_overcommit_mode", lambda: mode)
    assert resources.reservable_memory_bytes() == reservable


def test_no_meminfo_means_no_limit(monkeypatch):
    monkeypatch.setattr(resources, "_meminfo", dict)
    monkeypatch.setattr(resources, "_overcommit_mode", lambda: 0)
    assert resources.reservable_memory_bytes() is None and resources.available_memory_bytes() is None


def test_meminfo_is_read_in_bytes():
    info = resources._meminfo()  # this machine's, where there is one
    assert not info or (info["MemTotal"] > 2**20 and info["MemTotal"] % 1024 == 0)
