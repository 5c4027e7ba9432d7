#!/usr/bin/env bash
# Nightly benchmark run for scorebench.
#
#   benchmarks/nightly.sh [--quick] [--suite FILE] [--baseline DIR] [--out DIR] [--device D]
#                         [--machine NAME] [--claims "FILES"] [--skip-claims] [--skip-asv]
#                         [--skip-pytest-benchmark] [-- COMPARE-OPTIONS...]
#
# 1. runs the nightly suite (suites/nightly.toml) into a fresh run directory
#    (default results/nightly/<UTC time>);
# 2. compares it with the committed baseline (results/baselines/nightly) by
#    `scorebench compare`, writing <run>/compare.md (and appending it to $GITHUB_STEP_SUMMARY);
#    options after `--` go to `scorebench compare` (e.g. -- --metrics exact_w2 --time-factor 1.5);
# 2b. gates on theory: runs the paper suites FILES (default: the exact-law ones,
#    suites/papers/weak_order.toml, jko_contraction.toml and mooney_lipschitz.toml, about 20 s) in
#    full into <run>/claims/<name> and judges their [[claims]] by `scorebench claims`, writing
#    <run>/claims/claims.md; a claim that fails, or a paper suite's cell that fails, is a
#    regression (exit 1);
# 3. runs the asv benchmarks on the checked-out commit in the current environment
#    (`asv run -E existing --set-commit-hash HEAD --machine NAME`) after writing asv's machine
#    file, then `asv publish` (HTML in results/asv-html);
# 4. runs the pytest-benchmark suite tests/bench (when present) into
#    results/pytest-benchmark/<machine>/latest.json.
#
# --quick runs the suite with `scorebench run --quick` (smallest steps and sample size, at most
# two seeds: only the matching cells of the baseline are compared), and asv with
# `--quick --dry-run` (nothing saved), launched by forkserver unless --device cuda.
#
# Environment: PYTHON (interpreter, default python), MACHINE or SCOREBENCH_MACHINE (machine name;
# default derived from the hardware), SCOREBENCH_NIGHTLY_QUICK=1, SCOREBENCH_NIGHTLY_SKIP_ASV=1,
# SCOREBENCH_NIGHTLY_SKIP_PYTEST_BENCHMARK=1, SCOREBENCH_NIGHTLY_CLAIMS (the paper suites of step 2b,
# space-separated; empty: none), SCOREBENCH_NIGHTLY_SUITE, SCOREBENCH_NIGHTLY_BASELINE,
# SCOREBENCH_NIGHTLY_OUT, SCOREBENCH_NIGHTLY_DEVICE, SCOREBENCH_NIGHTLY_ASV_BENCH (regex: only these asv
# benchmarks), SCOREBENCH_NIGHTLY_ASV_LAUNCH (asv's --launch-method; spawn as configured by default).
#
# Exit status: 0 all good; 1 the comparison found NEW worse than the baseline (or a cell failed
# that the baseline ran), or a paper suite's claim fails; 2 bad input (suite or baseline missing or malformed); 3 accuracy fine
# but a benchmark tool failed (asv run/publish, pytest-benchmark).

set -uo pipefail

usage() {
    sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

PYTHON="${PYTHON:-python}"
QUICK="${SCOREBENCH_NIGHTLY_QUICK:-0}"
SKIP_ASV="${SCOREBENCH_NIGHTLY_SKIP_ASV:-0}"
SKIP_PYTEST_BENCHMARK="${SCOREBENCH_NIGHTLY_SKIP_PYTEST_BENCHMARK:-0}"
SUITE="${SCOREBENCH_NIGHTLY_SUITE:-suites/nightly.toml}"
BASELINE="${SCOREBENCH_NIGHTLY_BASELINE:-results/baselines/nightly}"
OUT="${SCOREBENCH_NIGHTLY_OUT:-}"
DEVICE="${SCOREBENCH_NIGHTLY_DEVICE:-}"
MACHINE="${MACHINE:-${SCOREBENCH_MACHINE:-}}"
CLAIMS="${SCOREBENCH_NIGHTLY_CLAIMS-suites/papers/weak_order.toml suites/papers/jko_contraction.toml suites/papers/mooney_lipschitz.toml}"
COMPARE_ARGS=()

need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "nightly: $1 needs a value" >&2
        exit 2
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --suite) need_value "$@"; SUITE="$2"; shift ;;
        --baseline) need_value "$@"; BASELINE="$2"; shift ;;
        --out) need_value "$@"; OUT="$2"; shift ;;
        --device) need_value "$@"; DEVICE="$2"; shift ;;
        --machine) need_value "$@"; MACHINE="$2"; shift ;;
        --claims) need_value "$@"; CLAIMS="$2"; shift ;;
        --skip-claims) CLAIMS="" ;;
        --skip-asv) SKIP_ASV=1 ;;
        --skip-pytest-benchmark) SKIP_PYTEST_BENCHMARK=1 ;;
        --) shift; COMPARE_ARGS=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "nightly: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "nightly: $*" >&2; }

if [ ! -f "$SUITE" ]; then
    log "suite file $SUITE not found"
    exit 2
fi
if [ ! -f "$BASELINE" ] && [ ! -f "$BASELINE/results.csv" ]; then
    log "no baseline table at $BASELINE (a run directory or results.csv); make one with"
    log "    scorebench run $SUITE --device cpu --out $BASELINE"
    exit 2
fi
if [ -z "$OUT" ]; then
    OUT="results/nightly/$(date -u +%Y%m%dT%H%M%SZ)$([ "$QUICK" = 1 ] && echo -quick)"
fi
if [ -e "$OUT/provenance.json" ]; then
    log "$OUT already holds a run; give another --out"
    exit 2
fi

if [ -z "$MACHINE" ]; then
    # a stable name from the hardware (host names change with every CI machine)
    if ! MACHINE="$("$PYTHON" -m scorebench.timing name)" || [ -z "$MACHINE" ]; then
        log "cannot name the machine: is scorebench installed for $PYTHON? (or give --machine)"
        exit 2
    fi
fi
log "machine $MACHINE, suite $SUITE, baseline $BASELINE, run $OUT$([ "$QUICK" = 1 ] && echo ' (quick)')"

# -- 1. the suite ---------------------------------------------------------------------
run_args=(run "$SUITE" --out "$OUT" --no-progress)
[ "$QUICK" = 1 ] && run_args+=(--quick)
[ -n "$DEVICE" ] && run_args+=(--device "$DEVICE")
started=$SECONDS
"$PYTHON" -m scorebench.cli "${run_args[@]}"
run_rc=$?
log "suite finished in $((SECONDS - started)) s (exit $run_rc)"
if [ "$run_rc" -ge 2 ] || [ ! -f "$OUT/results.csv" ]; then
    log "the suite could not run"
    exit 2
fi

# -- 2. accuracy against the baseline -------------------------------------------------
"$PYTHON" -m scorebench.cli compare "$BASELINE" "$OUT" --out "$OUT/compare.md" "${COMPARE_ARGS[@]}"
compare_rc=$?
if [ -f "$OUT/compare.md" ]; then
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
        { echo "## nightly on $MACHINE"; cat "$OUT/compare.md"; } >> "$GITHUB_STEP_SUMMARY"
    fi
    # the rows that changed, for the log
    grep -E '^\| \*\*worse|^\| better' "$OUT/compare.md" | head -40 >&2 || true
fi

# -- 2b. the papers' claims ----------------------------------------------------------
claims_rc=0
read -r -a claim_suites <<< "$CLAIMS"
if [ "${#claim_suites[@]}" -eq 0 ]; then
    log "claims skipped (no paper suites given)"
else
    claim_runs=()
    cells_failed=0
    for paper in "${claim_suites[@]}"; do
        name="$(basename "$paper" .toml)"
        paper_args=(run "$paper" --out "$OUT/claims/$name" --no-progress)
        [ -n "$DEVICE" ] && paper_args+=(--device "$DEVICE")
        "$PYTHON" -m scorebench.cli "${paper_args[@]}" >&2
        rc=$?
        if [ "$rc" -ge 2 ] || [ ! -f "$OUT/claims/$name/results.csv" ]; then
            log "paper suite $paper could not run (exit $rc)"
            claims_rc=2
        else
            # a failed cell of a paper suite fails the night: its claims would only turn inconclusive
            [ "$rc" -eq 1 ] && { log "paper suite $paper: some cells failed"; cells_failed=1; }
            claim_runs+=("$OUT/claims/$name")
        fi
    done
    if [ "$claims_rc" -eq 0 ]; then
        "$PYTHON" -m scorebench.cli claims "${claim_runs[@]}" --out "$OUT/claims"
        claims_rc=$?
        [ "$claims_rc" -eq 0 ] && [ "$cells_failed" = 1 ] && claims_rc=1
        if [ -f "$OUT/claims/claims.md" ] && [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
            { echo "## claims on $MACHINE"; cat "$OUT/claims/claims.md"; } >> "$GITHUB_STEP_SUMMARY"
        fi
    fi
    log "claims: exit $claims_rc"
fi

# -- 3. asv ---------------------------------------------------------------------------
asv_rc=0
if [ "$SKIP_ASV" = 1 ]; then
    log "asv skipped (SCOREBENCH_NIGHTLY_SKIP_ASV=1)"
elif [ ! -f asv.conf.json ]; then
    log "asv skipped: no asv.conf.json"
else
    "$PYTHON" -m scorebench.timing machine-file --name "$MACHINE" >&2 || asv_rc=3
    py_exe="$("$PYTHON" -c 'import sys; print(sys.executable)')"
    asv_args=(run -E "existing:$py_exe" --set-commit-hash "$(git rev-parse HEAD)" --machine "$MACHINE"
              --show-stderr --durations 20)
    [ -n "${SCOREBENCH_NIGHTLY_ASV_BENCH:-}" ] && asv_args+=(-b "$SCOREBENCH_NIGHTLY_ASV_BENCH")
    if [ "$QUICK" = 1 ]; then
        asv_args+=(--quick --dry-run)
        # a quick check on the CPU starts one process per benchmark combination: forked from a
        # server they cost milliseconds instead of a fresh interpreter with torch (seconds each);
        # CUDA keeps the configured spawn launcher (a forked process cannot use CUDA safely)
        launch="${SCOREBENCH_NIGHTLY_ASV_LAUNCH:-}"
        if [ -z "$launch" ] && [ "$DEVICE" != cuda ]; then
            launch=forkserver
        fi
        [ -n "$launch" ] && asv_args+=(--launch-method "$launch")
    else
        export SCOREBENCH_BENCH_SLOW=1
    fi
    started=$SECONDS
    "$PYTHON" -m asv "${asv_args[@]}" || asv_rc=3
    log "asv run finished in $((SECONDS - started)) s"
    "$PYTHON" -m asv publish || asv_rc=3
fi

# -- 4. pytest-benchmark --------------------------------------------------------------
bench_rc=0
if [ "$SKIP_PYTEST_BENCHMARK" = 1 ]; then
    log "pytest-benchmark skipped (SCOREBENCH_NIGHTLY_SKIP_PYTEST_BENCHMARK=1)"
elif [ ! -d tests/bench ]; then
    log "pytest-benchmark skipped: no tests/bench"
else
    store="results/pytest-benchmark/$MACHINE"
    mkdir -p "$store"
    bench_args=(tests/bench --benchmark-only -p no:xdist --benchmark-json "$store/latest.json")
    if [ "$QUICK" = 1 ]; then
        # short timings, not kept in the history
        bench_args+=(--benchmark-max-time=0.05 --benchmark-min-rounds=1)
    else
        bench_args+=(--benchmark-storage "file://$store" --benchmark-autosave)
    fi
    "$PYTHON" -m pytest "${bench_args[@]}"
    rc=$?
    # 5: no benchmark collected (e.g. only GPU benchmarks on a CPU machine)
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
        bench_rc=3
    fi
fi

# -- verdict --------------------------------------------------------------------------
if [ "$compare_rc" -ge 2 ] || [ "$claims_rc" -ge 2 ]; then
    status=2
elif [ "$compare_rc" -eq 1 ] || [ "$claims_rc" -eq 1 ]; then
    status=1
elif [ "$asv_rc" -ne 0 ] || [ "$bench_rc" -ne 0 ]; then
    status=3
else
    status=0
fi
printf '{"machine": "%s", "run": "%s", "quick": %s, "run_exit": %d, "compare_exit": %d, "claims_exit": %d, "asv_exit": %d, "pytest_benchmark_exit": %d, "exit": %d}\n' \
    "$MACHINE" "$OUT" "$([ "$QUICK" = 1 ] && echo true || echo false)" "$run_rc" "$compare_rc" "$claims_rc" "$asv_rc" \
    "$bench_rc" "$status" > "$OUT/nightly.json"
case "$status" in
    0) log "OK: no regression against $BASELINE (report: $OUT/compare.md)" ;;
    1) log "REGRESSION against $BASELINE or a failed claim: see $OUT/compare.md and $OUT/claims/claims.md" ;;
    2) log "could not compare with $BASELINE (exit $compare_rc)" ;;
    3) log "accuracy OK, but a benchmark tool failed (asv $asv_rc, pytest-benchmark $bench_rc)" ;;
esac
exit "$status"
