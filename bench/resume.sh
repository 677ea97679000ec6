#!/usr/bin/env bash
# Resume benchmark: what continuing an interrupted restore saves over
# starting again.
#
#   bench/resume.sh [--size 4G] [--at 90] [--runs 3] [--cold] [--dir DIR]
#
# Makes the standard mixed disk (seed 1), a changed copy (3% of blocks,
# seed 2), a gzip full of the first and a delta of the second. Then, --runs
# times each:
#   uninterrupted: the archive restores the whole disk (preallocated VMDK);
#   interrupted:   the same restore, SIGKILLed once its JSON progress passes
#                  --at percent (the kill lands a little later: the line
#                  prints the real share kept);
#   resumed:       the same command with --resume: every block already
#                  written is read back and hashed, the rest restored.
# Prints medians, the share of the disk the resume found in place, and the
# saving against restarting. Each run starts after a sync, so none pays for
# another's writeback. With --cold (root only) the page cache is dropped
# before each timed run, as after a power cut: the full, the delta and the
# partial file are read from the disk.
set -euo pipefail
size=4G at=90 runs=3 dir= cold=
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --at) at=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --cold) cold=1; shift ;;
        *) echo "usage: $0 [--size 4G] [--at 90] [--runs 3] [--cold] [--dir DIR]" >&2; exit 2 ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p sdar --manifest-path "$root/Cargo.toml"
sdar=$root/target/release/sdar
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 3; }
dir=${dir:-$root/bench/out}
mkdir -p "$dir"
cd "$dir"
. "$root/bench/disks.sh"
sample_disks "$size" 3
rm -rf resume && mkdir resume
"$sdar" full disk.raw -o resume/base.full.gz -q
"$sdar" delta new.raw --full resume/base.full.gz -o resume/d.sdar -q
cd resume

now() { date +%s.%N; }
settle() { # before a timed run
    sync
    if [ -n "$cold" ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}
full_times=() resume_times=() kept=()
for run in $(seq "$runs"); do
    rm -f r.vmdk r-flat.vmdk .r-flat.vmdk.sdar-partial
    settle
    t0=$(now)
    ./d.sdar restore --to r.vmdk -q
    full_times+=("$(python3 -c "print($(now) - $t0)")")
    rm -f r.vmdk r-flat.vmdk

    # Interrupt: read the JSON progress and SIGKILL past the mark.
    ./d.sdar restore --to r.vmdk --progress json 2> progress.jsonl &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        p=$(tail -n 1 progress.jsonl | sed -n 's/.*"percent":\([0-9]*\).*/\1/p')
        if [ -n "$p" ] && [ "$p" -ge "$at" ]; then
            kill -KILL "$pid"
            break
        fi
        sleep 0.02
    done
    wait "$pid" 2>/dev/null || true
    [ -f .r-flat.vmdk.sdar-partial ] || { echo "the restore finished before the kill; use a larger --size" >&2; exit 3; }
    # The killed run's writes reach the disk while nobody waits: a resume
    # comes later, and should not be charged for them.
    settle

    t0=$(now)
    ./d.sdar restore --to r.vmdk --resume -q --json > summary.json
    resume_times+=("$(python3 -c "print($(now) - $t0)")")
    kept+=("$(python3 -c 'import json,sys; s=json.load(open("summary.json")); print(100*s["kept_bytes"]/s["image_bytes"])')")
    cmp -s r-flat.vmdk ../new.raw || { echo "resumed disk differs from the source" >&2; exit 1; }
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
f=$(median "${full_times[@]}")
r=$(median "${resume_times[@]}")
k=$(median "${kept[@]}")
echo
echo "| $size disk, killed past ${at}%${cold:+, cold cache} | time s |"
echo "|---|---:|"
echo "| uninterrupted restore (median of $runs) | $f |"
echo "| resume: read back and prove ${k%.*}% in place, restore the rest | $r |"
python3 -c "f,r=$f,$r; print(f'| saving against starting over | {f-r:.2f} s ({100*(f-r)/f:.0f}%) |')"
