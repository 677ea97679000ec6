#!/usr/bin/env bash
# Full-image benchmark: sdar against the stock tools on the same disk, in one run.
#
#   bench/full.sh [--size 4G] [--runs 3] [--dir DIR]
#
# Generates the standard mixed disk (about 40% zeros, 35% text, 25% random;
# seed 1), then for each run executes every command once, alternating tools,
# and prints a markdown table of medians: wall time, MB/s of disk bytes,
# output size, peak RSS, and sdar's speed ratio against each peer.
# Everything is read from the page cache after the first run: this measures
# CPU cost, not the disk.
set -euo pipefail
size=4G runs=3 dir=
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "usage: $0 [--size 4G] [--runs 3] [--dir DIR]" >&2; exit 2 ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p sdar --manifest-path "$root/Cargo.toml"
sdar=$root/target/release/sdar
for t in gzip pigz zstd b3sum /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install gzip pigz zstd b3sum time)" >&2; exit 3; }
done
dir=${dir:-$root/bench/out}
mkdir -p "$dir"
cd "$dir"
disk=disk.raw
# Regenerate only when the requested size or seed changed.
if [ ! -f "$disk" ] || [ "$(cat disk.made 2>/dev/null)" != "$size seed 1" ]; then
    echo "generating $size sample disk..." >&2
    "$sdar" sample-disk "$disk" --size "$size" --seed 1 --force
    echo "$size seed 1" > disk.made
fi
bytes=$(stat -c %s "$disk")

# name | command (run with sh -c; output files are named in it)
cmds=(
  "sdar full gzip|$sdar full $disk -o s.full.gz --force -q"
  "pigz -6|pigz -6 -c $disk > p.gz"
  "gzip -6|gzip -6 -c $disk > g.gz"
  "sdar full zstd|$sdar full $disk --codec zstd -o s.full.zst --force -q"
  "zstd -3 -T0|zstd -q -3 -T0 -c $disk > z.zst"
  "sdar verify gzip|$sdar verify s.full.gz -q"
  "zcat > /dev/null|zcat s.full.gz > /dev/null"
  "pigz -d > /dev/null|pigz -dc s.full.gz > /dev/null"
  "sdar verify zstd|$sdar verify s.full.zst -q"
  "zstd -d > /dev/null|zstd -q -dc s.full.zst > /dev/null"
  "b3sum|b3sum $disk > /dev/null"
)
out_of() { case "$1" in "sdar full gzip") echo s.full.gz;; "pigz -6") echo p.gz;; "gzip -6") echo g.gz;; "sdar full zstd") echo s.full.zst;; "zstd -3 -T0") echo z.zst;; esac; }

declare -A times rss
for ((r = 1; r <= runs; r++)); do
    for entry in "${cmds[@]}"; do
        name=${entry%%|*} cmd=${entry#*|}
        /usr/bin/time -f "%e %M" -o time.txt sh -c "$cmd"
        read -r t m < time.txt
        times[$name]+="$t " rss[$name]+="$m "
        echo "run $r: $name ${t}s ${m}KiB" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "Disk: $(basename "$disk"), $bytes bytes; $runs runs, medians; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| command | time s | MB/s | output bytes | output % | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|"
declare -A med
for entry in "${cmds[@]}"; do
    name=${entry%%|*}
    t=$(echo "${times[$name]}" | median); m=$(echo "${rss[$name]}" | median)
    med[$name]=$t
    o=$(out_of "$name"); osz=-; opct=-
    if [ -n "$o" ]; then osz=$(stat -c %s "$o"); opct=$(awk -v a="$osz" -v b="$bytes" 'BEGIN{printf "%.2f", a*100/b}'); fi
    awk -v n="$name" -v t="$t" -v b="$bytes" -v o="$osz" -v p="$opct" -v m="$m" \
        'BEGIN{printf "| %s | %.2f | %.0f | %s | %s | %.1f |\n", n, t, b/1e6/t, o, p, m/1024}'
done
echo
echo "| ratio | value | target |"
echo "|---|---:|---|"
ratio() { awk -v a="${med[$2]}" -v b="${med[$1]}" -v l="$3" -v g="$4" 'BEGIN{printf "| %s | %.2fx | %s |\n", l, a/b, g}'; }
ratio "sdar full gzip" "pigz -6" "sdar full (gzip) speed vs pigz -6" "≥ 2x"
ratio "sdar full gzip" "gzip -6" "sdar full (gzip) speed vs gzip -6" ""
ratio "sdar full zstd" "zstd -3 -T0" "sdar full (zstd) speed vs zstd -3 -T0" "≥ 1x"
ratio "sdar verify gzip" "zcat > /dev/null" "sdar verify (gzip) vs zcat > /dev/null" "≥ 3x"
ratio "sdar verify gzip" "b3sum" "sdar verify (gzip) vs b3sum of the raw disk" ""
ratio "sdar verify zstd" "zstd -d > /dev/null" "sdar verify (zstd) vs zstd -d" ""
awk -v a="$(stat -c %s s.full.gz)" -v b="$(stat -c %s p.gz)" 'BEGIN{printf "| sdar gzip size vs pigz -6 | %+.2f%% | ≤ +3%% |\n", (a/b-1)*100}'
awk -v a="$(stat -c %s s.full.zst)" -v b="$(stat -c %s z.zst)" 'BEGIN{printf "| sdar zstd size vs zstd -3 | %+.2f%% | ≤ +3%% |\n", (a/b-1)*100}'
"$sdar" info s.full.gz --json | python3 -c "import json,sys; d=json.load(sys.stdin); print('| index + metadata / disk | %.4f%% | < 0.1%% |' % (d['index_bytes']*100/d['image_size']))"
# zcat must give back the exact disk
zcat s.full.gz | cmp - "$disk" && zstd -q -dc s.full.zst | cmp - "$disk" && echo && echo "zcat and zstd -dc give back the exact disk: yes"
