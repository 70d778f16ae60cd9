"""Peak memory growth of one call, measured in a fresh interpreter.

The test process's own peak (``ru_maxrss`` never goes down) says nothing about
one call, so the call runs in a child Python: ``setup`` first (imports, a
warm-up on a good file), then the peak is read, the call runs, and the peak is
read again.  A crafted file must be refused with a one-line error while the
peak grows by less than the test's bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20

SCRIPT = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from pvp_runtime.contract.errors import PVPError
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
error, value = "", None
try:
    value = {call}
except PVPError as exc:
    error = str(exc)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # Linux: kB
shown = value if isinstance(value, (int, str, type(None))) else type(value).__name__
sys.stdout.flush()
print("\\n" + json.dumps({{"error": error, "value": shown, "growth": growth}}))
"""


@dataclass
class Measured:
    error: str    # the PVPError raised by the call, "" if none
    value: object  # what the call returned (an exit code for CLI calls)
    growth: int   # bytes the peak resident set grew by during the call
    stdout: str   # what the call printed, without the measurement line
    stderr: str


def measure(call: str, setup: str = "") -> Measured:
    """Run the expression ``call`` after the statements ``setup`` in a fresh interpreter.
    Anything but a PVPError escaping the call fails the test (with the child's traceback)."""
    script = SCRIPT.format(repo=str(REPO), setup=setup, call=call)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, f"the call crashed:\n{child.stderr[-3000:]}"
    printed, _, last = child.stdout.rstrip("\n").rpartition("\n")
    result = json.loads(last)
    return Measured(result["error"], result["value"], result["growth"], printed.rstrip("\n"), child.stderr)
