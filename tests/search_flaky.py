"""A stand-in for the proxy that fails on purpose, for the retry tests; only the standard library, so Ray
workers that unpickle it start fast."""

from __future__ import annotations

import os
from hashlib import sha1
from pathlib import Path


def flaky_evaluate(code: str, out_dir: str, exit_first: bool) -> dict:
    """Fails the first try of every code (raising, or killing its process), and every try of codes with max
    pooling; otherwise a reward-like result from the code alone."""
    tries = Path(out_dir) / f"{sha1(code.encode()).hexdigest()}.tries"
    first = not tries.exists()
    tries.write_text(tries.read_text() + "x" if not first else "x")
    if "max" in code:
        raise RuntimeError("max pooling is not allowed here")
    if first:
        if exit_first:
            os._exit(1)
        raise RuntimeError("first try fails")
    return {"accuracy": len(code) / 100, "gflops": 1.0, "block_gflops": 0.1, "block_latency_ms": 1.0, "params": 1,
            "density": 1.0, "seconds": 0.0}
