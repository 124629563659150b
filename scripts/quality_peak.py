#!/usr/bin/env python3
"""Run a Python module (or a .py file) as __main__ and, at exit, write this process's own peak RSS in kB to a file.

Usage: quality_peak.py PEAK_FILE MODULE_OR_SCRIPT [ARGS...]

Why not the parent's os.wait4 / RUSAGE_CHILDREN: Linux records the forking parent's RSS high-water mark into the
child's ru_maxrss when the child execs, so a benchmark that has grown (torch loaded for verification) would lift
every later child's figure to its own size. /proc/self/status VmHWM belongs to the address space created by exec:
it is this process's peak alone.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def vm_hwm_kb() -> int | None:
    """VmHWM of /proc/self/status (Linux), None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text("ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.splitlines()[2])
    peak_file, target = Path(sys.argv[1]), sys.argv[2]

    def record() -> None:
        peak = vm_hwm_kb()
        if peak is not None:
            peak_file.write_text(f"{peak}\n", "ascii")

    atexit.register(record)
    sys.argv = [target, *sys.argv[3:]]
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
