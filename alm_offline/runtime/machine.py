"""What a result names of the machine that measured it, read without importing torch."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (/proc/cpuinfo's, which lscpu reads), or
    the platform's processor where that file is missing."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
