r"""Timing, memory and machine-description helpers for the benchmark suites.

Used by the asv suite (``benchmarks/``), the pytest-benchmark micro-benchmarks
(``tests/bench/``) and anyone timing scorebench kernels by hand.

* **Synchronised clocks.**  CUDA kernels run asynchronously: a host clock read while the
  device is still busy measures the launch, not the work.  :func:`sync_perf_counter`
  synchronises the current CUDA device (when CUDA has been initialised in this process) and
  then reads :func:`time.perf_counter` -- the timer ``torch.utils.benchmark`` uses on CUDA.
  On a CPU-only process it is ``perf_counter`` plus one dictionary lookup.
* **Warm-up.**  The first call of a kernel pays one-off costs (CUDA context, cuBLAS handles,
  lazy module initialisation); :func:`warm_up` calls a function a few times and synchronises,
  so that measurements start in the steady state.
* **Peak CUDA memory.**  :func:`cuda_peak_bytes` reports the bytes a call allocated above
  the level at its start (``torch.cuda.max_memory_allocated`` after a reset).
* **Machine description.**  :func:`environment_info` records what a timing depends on
  (CPU, GPU, driver, CUDA runtime, library versions, thread counts, determinism flags);
  :func:`machine_name` derives a stable name from the hardware (not the host name, which
  changes with every CI virtual machine); :func:`write_asv_machine_file` writes asv's
  ``~/.asv-machine.json`` non-interactively with that name and the GPU fields.

Command line::

    python -m scorebench.timing name                 # the stable machine name
    python -m scorebench.timing env                  # environment_info() as JSON
    python -m scorebench.timing machine-file [--name NAME] [--path FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from .environment import atomic_write_text, cpu_model, git_output, gpu_info, memory_bytes, package_version

T = TypeVar("T")

#: environment variable that overrides :func:`machine_name`
MACHINE_ENV = "SCOREBENCH_MACHINE"

#: asv's machine-file format version (``asv.machine.MachineCollection.api_version``)
ASV_MACHINE_API_VERSION = 1


# ---------------------------------------------------------------------------------------
# clocks and warm-up
# ---------------------------------------------------------------------------------------


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for every queued CUDA kernel on ``device`` (all of the current device's streams);
    a no-op on the CPU and in a process that never initialised CUDA."""
    if device is not None and torch.device(device).type != "cuda":
        return
    if torch.cuda.is_initialized():
        torch.cuda.synchronize(device)


def sync_perf_counter() -> float:
    """``time.perf_counter()`` read after synchronising CUDA (if this process initialised it).

    The difference of two calls around a region is the wall time of the region including
    the completion of its CUDA kernels.  Usable as asv's ``timer`` (wrapped in
    ``staticmethod``) and as pytest-benchmark's ``timer``.
    """
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def warm_up(fn: Callable[[], T], calls: int = 3, device: torch.device | str | None = None) -> T:
    """Call ``fn`` ``calls`` times (at least once), synchronise ``device``, return the last result."""
    result = fn()
    for _ in range(calls - 1):
        result = fn()
    synchronize(device)
    return result


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cuda") -> int:
    """Bytes of CUDA memory ``fn()`` needed above what was allocated when it started.

    ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated - memory_allocated``
    (caching-allocator bytes handed to tensors; the allocator's reserve and the CUDA context
    are not counted).
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"cuda_peak_bytes needs a CUDA device, got {device}")
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


# ---------------------------------------------------------------------------------------
# environment and machine description
# ---------------------------------------------------------------------------------------


def environment_info() -> dict[str, Any]:
    """What a timing depends on, as a JSON-ready dict.

    Hardware (CPU model and count, memory, GPU model, capability, memory, driver), software
    (Python, torch, CUDA runtime, cuDNN, numpy, POT, scipy, asv, asv_runner,
    pytest-benchmark, scorebench and its git commit and dirty flag), threads (torch intra-
    and inter-op threads, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) and the numerical
    settings that change speed or results (deterministic algorithms, cuDNN benchmark, TF32).
    """
    status = git_output("status", "--porcelain")
    return {
        "machine": machine_name(),
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "num_cpu": os.cpu_count(),
        "ram_bytes": memory_bytes(),
        **gpu_info(),
        "python": platform.python_version(),
        "packages": {
            p: package_version(p)
            for p in ("scorebench", "torch", "numpy", "pot", "scipy", "asv", "asv_runner", "pytest-benchmark")
        },
        "git_commit": git_output("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")},
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "timer": "scorebench.timing.sync_perf_counter (torch.cuda.synchronize, then time.perf_counter)",
    }


def _slug(text: str) -> str:
    text = re.sub(r"\((?:R|TM|tm|r)\)", "", text)
    text = re.sub(r"\b(CPU|Processor|with Radeon Graphics)\b", "", text)
    text = re.sub(r"@.*$", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_name(gpu: str | None = None, cpu: str | None = None, num_cpu: int | None = None) -> str:
    """A stable name for this machine: ``$SCOREBENCH_MACHINE`` if set, otherwise derived from the
    hardware, ``gpu-<gpu model>-cpu<count>`` with a GPU, ``cpu-<cpu model>-<count>c`` without.

    Host names change with every CI virtual machine and would scatter one machine's results
    over many asv result folders; the hardware does not.  The arguments override what is
    detected (for tests and for naming another machine); without a ``gpu`` argument, CUDA is
    queried only when a GPU driver is present.
    """
    override = os.environ.get(MACHINE_ENV, "").strip()
    if override:
        return override
    if gpu is None and _driver_present() and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    count = os.cpu_count() if num_cpu is None else num_cpu
    if gpu:
        return f"gpu-{_slug(gpu)}-cpu{count}"
    return f"cpu-{_slug(cpu or cpu_model())}-{count}c"


def _driver_present() -> bool:
    """Whether a GPU driver may be present (always true off Linux, where we cannot tell cheaply)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd"))


def asv_machine_info(name: str | None = None) -> dict[str, Any]:
    """asv's machine fields (``machine, os, arch, cpu, num_cpu, ram``) plus ``gpu``,
    ``gpu_capability``, ``cuda``, ``cudnn``, ``driver`` and ``torch``.

    asv copies every key of the machine entry into ``results/<machine>/machine.json`` and into
    each result file's ``params``, so a result says which GPU and driver produced it.
    Values are strings, as asv writes them ("" where unknown).
    """
    gpu = gpu_info()
    ram = memory_bytes()
    fields = {
        "machine": name or machine_name(gpu=gpu["gpu"]),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "num_cpu": str(os.cpu_count() or ""),
        "ram": "" if ram is None else str(ram),
        "gpu": gpu["gpu"] or "none",
        "gpu_capability": gpu["gpu_capability"] or "",
        "cuda": gpu["cuda_runtime"] or "none",
        "cudnn": "" if gpu["cudnn"] is None else str(gpu["cudnn"]),
        "driver": gpu["driver"] or "",
        "torch": torch.__version__,
    }
    return fields


def write_asv_machine_file(
    name: str | None = None, path: str | Path | None = None, info: dict[str, Any] | None = None
) -> Path:
    """Add (or replace) this machine's entry in asv's machine file and return the file's path.

    ``path`` defaults to ``~/.asv-machine.json``, the only place ``asv run`` reads; entries
    for other machines already in the file are kept.  ``info`` defaults to
    :func:`asv_machine_info` of ``name``.  Then ``asv run --machine NAME`` runs without asking
    questions, and ``NAME`` is the folder under ``results/asv/``.
    """
    target = Path(os.path.expanduser("~/.asv-machine.json") if path is None else path)
    info = asv_machine_info(name) if info is None else info
    data: dict[str, Any] = {}
    if target.is_file():
        try:
            data = json.loads(target.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{target} is not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(data, dict):
            raise ValueError(f"{target} does not hold a JSON object; fix or remove it")

    data[info["machine"]] = info
    data["version"] = ASV_MACHINE_API_VERSION
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(data, indent=4, sort_keys=True) + "\n")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scorebench.timing", description="Machine names and descriptions for benchmark runs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("name", help="print the stable machine name")
    sub.add_parser("env", help="print environment_info() as JSON")
    mf = sub.add_parser("machine-file", help="write asv's machine file non-interactively")
    mf.add_argument("--name", default=None, help=f"machine name (default: ${MACHINE_ENV} or derived from the hardware)")
    mf.add_argument("--path", default=None, help="machine file (default: ~/.asv-machine.json)")
    args = parser.parse_args(argv)
    if args.command == "name":
        print(machine_name())
    elif args.command == "env":
        print(json.dumps(environment_info(), indent=2, sort_keys=True, default=str))
    else:
        info = asv_machine_info(args.name)
        path = write_asv_machine_file(path=args.path, info=info)
        print(f"wrote machine {info['machine']!r} to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
