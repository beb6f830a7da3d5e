"""Fault-test fixtures: a recorded, replayable seed and the fault schedule's length."""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture()
def fault_seed(request: pytest.FixtureRequest) -> int:
    """The seed of a test's fault schedule: LINEWATCH_FAULT_SEED replays one; otherwise a
    fresh one, printed and kept in the test report's properties (``-rA`` / junit XML)."""
    given = os.environ.get("LINEWATCH_FAULT_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    request.node.user_properties.append(("fault_seed", seed))
    print(f"fault seed {seed} (replay: LINEWATCH_FAULT_SEED={seed})")
    return seed


@pytest.fixture()
def rng(fault_seed: int) -> random.Random:
    return random.Random(fault_seed)


@pytest.fixture()
def fault_full() -> bool:
    """LINEWATCH_FAULT_FULL=1: the issue's full-length schedules (e.g. breaks every 1-4 s)
    instead of the shortened ones of the default suite (docs/operations.md, "Faults")."""
    return os.environ.get("LINEWATCH_FAULT_FULL") == "1"
