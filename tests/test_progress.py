"""Progress on a terminal is tqdm's bar; elsewhere (a CI log, a file) it is a few plain lines."""

from __future__ import annotations

import io

from tqdm import tqdm

from okspose.progress import LogProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_redirected_output_gets_one_line_at_the_end_not_an_update_per_step():
    out = io.StringIO()
    bar = progress(range(5000), desc="epoch 1/7", unit="batch", stream=out)
    assert isinstance(bar, LogProgress)
    for _ in bar:
        bar.set_postfix(loss="1.0e-03")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 1
    assert lines[0].startswith("epoch 1/7: 5000/5000 batch in ") and lines[0].endswith("loss=1.0e-03")


def test_a_line_every_interval_while_work_goes_on(monkeypatch):
    clock = iter(range(0, 1000, 10))  # each call of the clock 10 s later
    monkeypatch.setattr("okspose.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = LogProgress(None, "pose", 20, "img", out, interval=30.0)
    for _ in range(20):
        bar.update()
    bar.close()
    assert len(out.getvalue().splitlines()) == 7  # whenever 30 s have passed since the last line, and one at the close


def test_terminal_gets_tqdm_and_disabled_shows_nothing():
    assert isinstance(progress(range(3), desc="x", stream=Terminal()), tqdm)
    out = io.StringIO()
    for _ in progress(range(3), desc="x", enabled=False, stream=out):
        pass
    assert out.getvalue() == ""
