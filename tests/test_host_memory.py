"""The render processes keep freed host memory, so repeated passes stop page-faulting."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Allocates and frees a 64 MB block ten times; prints whether the setting took and the minor
# page faults per round.  Run in a fresh process: mallopt changes the whole process.
ROUNDS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from pvp_runtime.host_memory import keep_freed_memory, release_freed_memory
    took = keep_freed_memory() if sys.argv[2] == "kept" else None
    block = np.ones(8 << 20); del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        block = np.ones(8 << 20); del block
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
    release_freed_memory()
    print(took, faults)
""")


def _rounds(mode):
    out = subprocess.run([sys.executable, "-c", ROUNDS, str(REPO), mode], capture_output=True, text=True, check=True)
    took, faults = out.stdout.split()
    return took, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_reused_blocks_do_not_fault_again():
    took, kept = _rounds("kept")
    _, default = _rounds("default")
    assert took == "True"
    # Without the setting each 64 MB block is mmapped afresh (hundreds of faults per round here).
    assert kept <= 2 and kept < default, (kept, default)
