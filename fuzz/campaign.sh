#!/usr/bin/env bash
# Runs fuzz targets one after another, SECONDS each (default 1800, the
# campaign of fuzz/README.md), one process each (-jobs=1), and prints per
# target the time it ran, libFuzzer's executions, its coverage (cov: and ft:
# of the last status line) and the crash inputs it wrote.
#
#   fuzz/campaign.sh [SECONDS] [TARGET...]
#
# Without targets it runs every one of `cargo fuzz list`. Each run starts from
# and adds to fuzz/corpus/<target>/ (fuzz/seed-corpus.sh seeds it) and keeps
# its whole output in fuzz/campaign-logs/<UTC time>/<target>.log. libFuzzer
# stops a target at its first crash; the next target still runs. Exits 1 if
# any target crashed (see "When a target crashes" in fuzz/README.md).
#
# Run one campaign at a time: with -jobs, libFuzzer writes fuzz-0.log into
# fuzz/. Needs the nightly toolchain and cargo-fuzz.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir" # for .cargo/config.toml (see README.md)

seconds=${1:-1800}
case $seconds in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
shift $(($# > 0 ? 1 : 0))
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

logs="$fuzz_dir/campaign-logs/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$logs"

# Built first, so that build time is not counted as fuzzing time.
for t in "${targets[@]}"; do
    cargo +nightly fuzz build "$t"
done

# The crash, leak, oom, timeout and slow-unit inputs libFuzzer has written.
findings() {
    find "artifacts/$1" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' -o -name 'timeout-*' \
        -o -name 'slow-unit-*' \) -newer "$logs/.start-$1" 2>/dev/null | sort
}

summary=()
failed=0
for t in "${targets[@]}"; do
    if [ -z "$(ls -A "corpus/$t" 2>/dev/null)" ]; then
        echo "note: corpus/$t is empty; fuzz/seed-corpus.sh seeds it" >&2
    fi
    log="$logs/$t.log"
    mkdir -p "artifacts/$t"
    touch "$logs/.start-$t"
    echo "== $t: ${seconds}s, log in $log" >&2
    start=$(date +%s)
    status=0
    cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -jobs=1 \
        -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    rm -f fuzz-0.log # a copy of what is in $log

    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 |
        grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+[[:space:]]+(INITED|NEW|REDUCE|pulse|DONE|RELOAD)' "$log" |
        tail -n 1 || true)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || true)
    mapfile -t found < <(findings "$t")
    rm -f "$logs/.start-$t"
    crashes=${#found[@]}
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="? (exit $status, see log)"
    fi
    if [ "$status" -ne 0 ] || [ ${#found[@]} -ne 0 ]; then
        failed=1
    fi
    line=$(printf '%-14s %6ss %12s %7s %8s  %s' "$t" "$elapsed" "${execs:-?}" \
        "${cov:-?}" "${ft:-?}" "$crashes")
    summary+=("$line")
    echo "$line" >&2
    for f in "${found[@]}"; do
        summary+=("               $f")
        echo "               $f" >&2
    done
done

echo
printf '%-14s %7s %12s %7s %8s  %s\n' target time executions cov ft crashes
printf '%s\n' "${summary[@]}"
echo "logs: $logs"
exit "$failed"
