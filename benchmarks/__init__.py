"""asv benchmarks of scorebench: kernel timings (``time_*``), memory (``peakmem_*``, CUDA peak
bytes) and seeded accuracy errors (``track_*``), on CPU and CUDA.  See docs/benchmarking.md.

Importing a benchmark module imports neither torch nor scorebench: asv starts one process per
parameter combination (``launch_method: spawn``), and a combination that is skipped before any
work (no CUDA device, slow sizes switched off) then costs an interpreter start, not a torch
import.  Under asv's forkserver launcher (``asv run --launch-method forkserver``) the suite is
imported once in the server process and every benchmark is forked from it; there torch and
scorebench are imported up front so that the forked benchmarks share them (the server never
initialises CUDA, so forked benchmarks may).
"""

import sys

if sys.argv[1:2] == ["run_server"]:  # asv_runner's forkserver process
    import scorebench  # noqa: F401
