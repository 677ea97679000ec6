# Sourced by the benchmarks: the standard disks, made once and kept in the
# current folder while their recipe is the same.
#
#   sample_disks SIZE PERCENT   disk.raw: the mixed disk (seed 1);
#                               new.raw: a copy with about PERCENT% of its
#                               blocks changed (seed 2)
# Needs $sdar, the sdar binary.
sample_disks() {
    local size=$1 percent=$2
    if [ ! -f disk.raw ] || [ "$(cat disk.made 2>/dev/null)" != "$size seed 1" ]; then
        "$sdar" sample-disk disk.raw --size "$size" --seed 1 --force
        echo "$size seed 1" > disk.made
    fi
    if [ ! -f new.raw ] || [ "$(cat new.made 2>/dev/null)" != "$size seed 1 change $percent seed 2" ]; then
        cp disk.raw new.raw
        "$sdar" sample-change new.raw --percent "$percent" --seed 2
        echo "$size seed 1 change $percent seed 2" > new.made
    fi
}
