"""The one place that imports tqdm: progress bars on stderr, silent when it is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from tqdm import tqdm

tqdm.monitor_interval = 0  # no monitor thread: the slab coders fork only from a process with one thread
_enabled = True


def set_enabled(on: bool) -> None:
    """``--quiet`` turns every bar off."""
    global _enabled
    _enabled = on


@contextmanager
def bar(total: int, desc: str, unit: str = "tile") -> Iterator[Callable[[int], None]]:
    """A bar as a callback ``advance(n)``; ``disable=None`` hides it when stderr is no terminal."""
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
              disable=None if _enabled else True) as t:
        yield t.update


@contextmanager
def training_bar(total: int) -> Iterator[Callable[[int, dict], None]]:
    with tqdm(total=total, desc="train", unit="step", file=sys.stderr, disable=None if _enabled else True) as t:
        def report(step: int, figures: dict) -> None:
            t.update(1)
            if step % 10 == 0:
                t.set_postfix({k: f"{v:.4g}" for k, v in figures.items()}, refresh=False)
        yield report
