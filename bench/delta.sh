#!/usr/bin/env bash
# Delta and restore benchmark: sdar against xdelta3, zstd --patch-from, b3sum,
# zcat and pigz on the same disk pair, in one run.
#
#   bench/delta.sh [--size 4G] [--percent 3] [--dir DIR]
#
# Makes the standard mixed disk (seed 1) and a changed copy with about
# --percent of its 64 KiB blocks changed (half clustered rewrites, some zero
# blocks filled, the rest 1-4 page rewrites; seed 2). Then times:
#   delta creation: sdar delta (gzip and zstd full), xdelta3 -e -s,
#     zstd --patch-from (on 1 GiB pieces: it refuses files over 2 GiB), b3sum
#   delta size: those, and the floor: the changed 64 KiB blocks gzip -6'd
#     plus 32 bytes of hash each
#   restore: running the archive (gzip and zstd full, verified, preallocated
#     VMDK) against zcat > raw, pigz -d > raw, zstd -d -o raw
# and prints a markdown table with peak RSS. Page cache is warm: CPU cost.
set -euo pipefail
size=4G percent=3 dir=
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size=$2; shift 2 ;;
        --percent) percent=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "usage: $0 [--size 4G] [--percent 3] [--dir DIR]" >&2; exit 2 ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p sdar --manifest-path "$root/Cargo.toml"
sdar=$root/target/release/sdar
for t in gzip pigz zstd xdelta3 b3sum /usr/bin/time python3; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install gzip pigz zstd xdelta3 b3sum time)" >&2; exit 3; }
done
dir=${dir:-$root/bench/out}
mkdir -p "$dir"
cd "$dir"
. "$root/bench/disks.sh"
sample_disks "$size" "$percent"
bytes=$(stat -c %s new.raw)
rm -f base.* restored* d-*.sdar
"$sdar" full disk.raw -o base.full.gz -q --force
"$sdar" full disk.raw --codec zstd -o basez.full.zst -q --force
gzip -6 -c disk.raw > stock.gz 2>/dev/null || true
zstd -q -3 -T0 -f disk.raw -o stock.zst

rows=()
measure() { # name command...
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o time.txt sh -c "$*"
    read -r t m < time.txt
    rows+=("$name|$t|$m")
    echo "$name: ${t}s ${m}KiB" >&2
}

measure "b3sum new.raw" "b3sum new.raw > /dev/null"
measure "sdar delta (gzip full)" "$sdar delta new.raw --full base.full.gz -o d-gz.sdar -q --force"
measure "sdar delta (zstd full)" "$sdar delta new.raw --full basez.full.zst -o d-zst.sdar -q --force"
measure "sdar delta --index-only" "$sdar delta new.raw --full base.full.gz --index-only -o d-idx.sdar -q --force"
measure "xdelta3 -e -s" "xdelta3 -e -f -s disk.raw new.raw x.vcdiff"
# zstd --patch-from refuses inputs over 2 GiB: patch 1 GiB pieces, sum sizes and times.
piece=$((1 << 30)); n=$(( (bytes + piece - 1) / piece ))
measure "zstd --patch-from (1 GiB pieces)" "
  for i in \$(seq 0 $((n - 1))); do
    dd if=disk.raw of=p-old bs=1M skip=\$((i*1024)) count=1024 status=none
    dd if=new.raw of=p-new bs=1M skip=\$((i*1024)) count=1024 status=none
    zstd -q -3 -T0 -f --patch-from=p-old p-new -o p-\$i.zst
  done"
zpatch=$(cat p-*.zst | wc -c); rm -f p-old p-new p-*.zst

measure "restore: ./d-gz.sdar (gzip full)" "./d-gz.sdar restore --to restored.vmdk --force -q"
measure "zcat base.full.gz > disk.raw" "zcat base.full.gz > restored-zcat.raw"
measure "pigz -d base.full.gz > disk.raw" "pigz -dc base.full.gz > restored-pigz.raw"
cmp restored-flat.vmdk new.raw
measure "restore: ./d-zst.sdar (zstd full)" "./d-zst.sdar restore --to restoredz.vmdk --force -q"
measure "zstd -d basez.full.zst -o disk.raw" "zstd -q -d -f basez.full.zst -o restored-zstd.raw"
cmp restoredz-flat.vmdk new.raw

# The floor: changed 64 KiB blocks, gzip -6'd, plus a 32-byte hash each.
floor=$(python3 - <<'PY'
import zlib
B = 1 << 16
total = 0
changed = 0
with open("disk.raw", "rb") as a, open("new.raw", "rb") as b:
    while True:
        x, y = a.read(B), b.read(B)
        if not y:
            break
        if x != y:
            changed += 1
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
            total += len(c.compress(y) + c.flush()) + 32
print(total, changed)
PY
)
read -r floor_bytes changed_blocks <<< "$floor"

echo
echo "Disk pair: $bytes bytes, $changed_blocks of $((bytes / 65536)) blocks of 64 KiB changed; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| command | time s | MB/s | peak RSS MiB |"
echo "|---|---:|---:|---:|"
declare -A T
for r in "${rows[@]}"; do
    IFS='|' read -r name t m <<< "$r"
    T[$name]=$t
    awk -v n="$name" -v t="$t" -v b="$bytes" -v m="$m" 'BEGIN{printf "| %s | %.2f | %.0f | %.1f |\n", n, t, b/1e6/t, m/1024}'
done
payload() { "$sdar" info "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['payload_bytes'])"; }
echo
echo "| delta | bytes |"
echo "|---|---:|"
echo "| floor: changed 64 KiB blocks gzip -6 + hashes | $floor_bytes |"
echo "| sdar delta payload (gzip full) | $(payload d-gz.sdar) |"
echo "| sdar delta payload, --index-only | $(payload d-idx.sdar) |"
echo "| sdar delta file (payload + runtime) | $(stat -c %s d-gz.sdar) |"
echo "| xdelta3 -e -s | $(stat -c %s x.vcdiff) |"
echo "| zstd --patch-from (sum of 1 GiB pieces) | $zpatch |"
echo "| restore runtime | $(( $(stat -c %s d-gz.sdar) - $(payload d-gz.sdar) - 32 )) |"
echo
r() { awk -v a="${T[$2]}" -v b="${T[$1]}" -v l="$3" -v g="$4" 'BEGIN{printf "| %s | %.2fx | %s |\n", l, a/b, g}'; }
echo "| ratio | value | target |"
echo "|---|---:|---|"
r "sdar delta (gzip full)" "xdelta3 -e -s" "delta creation vs xdelta3 -e -s" "≥ 10x"
r "sdar delta (gzip full)" "zstd --patch-from (1 GiB pieces)" "delta creation vs zstd --patch-from" ""
r "sdar delta (gzip full)" "b3sum new.raw" "delta creation vs b3sum of the source" ""
r "restore: ./d-gz.sdar (gzip full)" "zcat base.full.gz > disk.raw" "restore (gzip) vs zcat > raw" "≥ 4x"
r "restore: ./d-gz.sdar (gzip full)" "pigz -d base.full.gz > disk.raw" "restore (gzip) vs pigz -d > raw" ""
r "restore: ./d-zst.sdar (zstd full)" "zstd -d basez.full.zst -o disk.raw" "restore (zstd) vs zstd -d -o raw" "≥ 1x"
rm -f restored*.raw
