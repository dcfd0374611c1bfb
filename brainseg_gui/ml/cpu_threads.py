"""How many CPU threads inference and training use, and how the CPU is named to the user (no torch).

The cores this process may run on (taskset / cgroup affinity), unless OMP_NUM_THREADS says otherwise
(users set it on shared servers on purpose); torch's own default can oversubscribe a shared machine.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on (respects taskset / cgroup affinity where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_threads() -> int:
    """The threads to compute with: an explicit OMP_NUM_THREADS, else the usable cores."""
    from_env = os.environ.get("OMP_NUM_THREADS", "")
    return int(from_env) if from_env.isdigit() and int(from_env) > 0 else available_cores()


def describe_cpu(threads: int) -> str:
    """'CPU, 2 threads'."""
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"
