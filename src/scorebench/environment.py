"""Facts about the environment a run or a timing depends on, and atomic file writes.

A leaf module (it imports nothing from scorebench): the result tables (:mod:`scorebench.results`),
the timing helpers (:mod:`scorebench.timing`) and the peer benchmark all read the installed versions,
the CPU and GPU, and the git commit from here.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:  # the bytes checksummed are the bytes written
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)



def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``; ``None`` if it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    """Physical memory in bytes, where the OS says."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver version (``/proc/driver/nvidia/version`` or ``nvidia-smi``)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if lines else None


def git_output(*args: str) -> str | None:
    """``git ARGS`` run in scorebench's source folder, stripped; ``None`` outside a git checkout
    (an installed wheel) or without git."""
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=True, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def gpu_info() -> dict[str, Any]:
    """GPU model, count, compute capability, memory, CUDA runtime, cuDNN and driver
    (``None`` values without CUDA).  Initialises CUDA when it is available."""
    available = torch.cuda.is_available()
    info: dict[str, Any] = {
        "cuda_available": available,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if available else None,
        "gpu": None, "gpu_count": 0, "gpu_capability": None, "gpu_memory_bytes": None,
        "driver": nvidia_driver() if available else None,
    }
    if available:
        props = torch.cuda.get_device_properties(0)
        info.update({
            "gpu": props.name, "gpu_count": torch.cuda.device_count(),
            "gpu_capability": f"{props.major}.{props.minor}", "gpu_memory_bytes": int(props.total_memory),
        })
    return info
