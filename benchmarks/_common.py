"""Helpers shared by the benchmark scripts: the CPU's name, the commit, a file-name slug, time formatting."""
from __future__ import annotations

import math
import platform
import re
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The short hash of the checkout's HEAD (the code a result was measured with), or None outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def slug(s: str) -> str:
    """A lowercase file-name fragment of ``s`` ("Intel(R) Xeon(R) Processor" -> "intel_xeon_processor")."""
    s = re.sub(r"\((r|tm|R|TM)\)", "", s)
    s = re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")
    return s or "cpu"


def fmt_t(t) -> str:
    """Seconds as a short human-readable string ("-" for None / NaN)."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} us"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    if t < 600:
        return f"{t:.1f} s"
    return f"{t / 60:.0f} min"
