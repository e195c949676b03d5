"""Progress that suits where the output goes: tqdm's bar on a terminal; elsewhere (CI logs, output
redirected to a file) one plain line at most every ``LOG_INTERVAL_S`` seconds and one when the work ends,
instead of thousands of carriage-return updates."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class LogProgress:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``) written as occasional lines."""

    def __init__(self, iterable: Iterable | None, desc: str, total: int | None, unit: str, stream: TextIO,
                 interval: float = LOG_INTERVAL_S) -> None:
        self.iterable, self.desc, self.unit, self.stream, self.interval = iterable, desc, unit, stream, interval
        self.total = total if total is not None else _length(iterable)
        self.n, self.postfix, self.closed = 0, "", False
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self.last >= self.interval:
            self._line()

    def refresh(self) -> None:
        """Nothing to redraw: the next line shows the new count and total."""

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.n:
            self._line()
        self.closed = True

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> None:
        self.last = time.perf_counter()
        seconds = self.last - self.start
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        rate = f", {self.n / seconds:.1f} {self.unit}/s" if seconds > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count} {self.unit} in {seconds:.0f} s{rate}{extra}", file=self.stream, flush=True)


def _length(iterable: Iterable | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it",
             enabled: bool = True, leave: bool = True, stream: TextIO | None = None) -> tqdm | LogProgress:
    """A progress bar over ``iterable`` (or updated by hand): tqdm on a terminal, :class:`LogProgress`
    elsewhere; ``enabled=False`` shows nothing."""
    stream = stream or sys.stderr
    if not enabled or stream.isatty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, leave=leave,
                    dynamic_ncols=True, file=stream)
    return LogProgress(iterable, desc, total, unit, stream)
