#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ for every fuzz target (see fuzz/README.md).
#
# Sources are the golden vectors in tests/vectors/. When there are none, it
# makes its own: small `sdar sample-disk` disks (one also behind a VMDK descriptor)
# written to a temporary folder and turned into full images with
# `cargo run -p sdar -- full`. Two VMDK descriptors are always added.
#
#   full_verify    every full image, whole
#   index_segment  every INDX record body, behind the shape byte(s) that make
#                  fuzzing::index_segment accept it, and behind plain ones
#   metadata       every META record body
#   descriptor     every VMDK descriptor
#   roundtrip      the first bytes of each raw disk (its input is structured,
#                  so these only give it realistic content to start from)
#
# Seeds are named by their SHA-1, like libFuzzer's own, so running the script
# again adds nothing twice. Needs bash, python3 and cargo.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
vectors="$root/tests/vectors"
corpus="$fuzz_dir/corpus"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sdar() {
    cargo run -q --manifest-path "$root/Cargo.toml" -p sdar -- "$@"
}

# The two descriptor layouts `sdar full` reads, 16 sectors of fuzz-flat.vmdk.
descriptor() { # create type, extent line
    printf '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=fffffffe\nparentCID=ffffffff\ncreateType="%s"\n\n# Extent description\n%s\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\nddb.geometry.cylinders = "1"\nddb.geometry.heads = "64"\nddb.geometry.sectors = "32"\nddb.uuid = "60 00 c2 9b 5e 1d 4a 21-9f 3c 8a 77 10 42 d3 e5"\nddb.virtualHWVersion = "19"\n' "$1" "$2"
}

sources=()
if [ -d "$vectors" ]; then
    while IFS= read -r -d '' f; do
        sources+=("$f")
    done < <(find "$vectors" -type f ! -name '*.md' ! -name '*.json' -print0 | sort -z)
fi

if [ ${#sources[@]} -eq 0 ]; then
    echo "no vectors in $vectors: making seeds with sdar sample-disk and sdar full" >&2
    gen="$work/gen"
    mkdir -p "$gen"
    # Sample seeds 1 and 2 start with text and with zeros, so concatenations
    # give images with both data and zero blocks.
    sdar sample-disk "$gen/text" --size 64K --seed 1
    sdar sample-disk "$gen/zero" --size 64K --seed 2
    sdar sample-disk "$gen/mixed" --size 64K --seed 4
    cut() { head -c "$2" "$gen/$1"; }
    # Boundary sizes around the 4 KiB block; 7961 and 7968 are the short
    # last segments fuzzing::index_segment builds for shape bytes 0x21 and
    # 0x20, so those INDX bodies pass every check there.
    : >"$gen/disk-0"
    cut text 1 >"$gen/disk-1"
    cut text 4095 >"$gen/disk-4095"
    cut zero 4096 >"$gen/disk-4096-zero"
    { cut text 4096; cut zero 1; } >"$gen/disk-4097"
    { cut zero 4096; cut text 3865; } >"$gen/disk-7961"
    { cut text 4096; cut zero 3872; } >"$gen/disk-7968"
    { cut mixed 4096; cut zero 4096; cut text 4096; } >"$gen/disk-12288"
    { cut zero 4096; cut mixed 8192; cut zero 513; } >"$gen/disk-12801"
    printf '.encoding = "UTF-8"\ndisplayName = "fuzz-vm"\nuuid.bios = "56 4d 9a 3c 11 22 33 44-55 66 77 88 99 aa bb cc"\nscsi0:0.fileName = "fuzz.vmdk"\n' >"$gen/fuzz.vmx"
    # 16 sectors = 8 KiB of data: the first two blocks of disk-12288.
    cut text 8192 >"$gen/fuzz-flat.vmdk"
    descriptor monolithicFlat 'RW 16 FLAT "fuzz-flat.vmdk" 0' >"$gen/fuzz.vmdk"
    descriptor vmfs 'RW 16 VMFS "fuzz-flat.vmdk"' >"$gen/fuzz-vmfs.vmdk"

    disks=("$gen"/disk-*)
    for codec in gzip zstd; do
        for disk in "${disks[@]}"; do
            sdar full "$disk" -o "$disk.$codec.full" --codec "$codec" --block-size 4K \
                --threads 1 --quiet --force
        done
        sdar full "$gen/disk-4097" -o "$gen/meta.$codec.full" --codec "$codec" \
            --block-size 4K --vmx "$gen/fuzz.vmx" --threads 1 --quiet --force
        sdar full "$gen/fuzz.vmdk" -o "$gen/vmdk.$codec.full" --codec "$codec" \
            --block-size 4K --vmx "$gen/fuzz.vmx" --threads 1 --quiet --force
    done
    rm "$gen"/{text,zero,mixed}
    for f in "$gen"/*; do
        sources+=("$f")
    done
fi

# The vectors hold no descriptors so far; these two cost nothing.
mkdir -p "$work/descriptors"
descriptor monolithicFlat 'RW 16 FLAT "fuzz-flat.vmdk" 0' >"$work/descriptors/flat.vmdk"
descriptor vmfs 'RW 16 VMFS "fuzz-flat.vmdk"' >"$work/descriptors/vmfs.vmdk"
sources+=("$work/descriptors/flat.vmdk" "$work/descriptors/vmfs.vmdk")

python3 - "$corpus" "${sources[@]}" <<'EOF'
"""Sorts each source into the corpora, extracting record bodies from full
images by scanning for their containers (SPEC.md §4.2, §4.3) and keeping only
records whose CRC (SPEC.md §4) holds."""
import hashlib
import os
import struct
import sys
import zlib

corpus, sources = sys.argv[1], sys.argv[2:]
added = {}

def seed(target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        added[target] = added.get(target, 0) + 1

GZIP_RECORD_PREFIX = bytes([0x1F, 0x8B, 8, 0x04, 0, 0, 0, 0, 0, 0xFF])
GZIP_RECORD_SUFFIX = bytes([0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0])
GZIP_MAX_FRAGMENT = 65535 - 4
ZSTD_RECORD_MAGIC = struct.pack("<I", 0x184D2A5D)

def gzip_fragment(data, at):
    """The record bytes of the gzip record member at `at`, and its length."""
    head = data[at:at + 16]
    if len(head) < 16 or head[:10] != GZIP_RECORD_PREFIX or head[12:14] != b"SD":
        return None
    xlen, n = struct.unpack_from("<H", head, 10)[0], struct.unpack_from("<H", head, 14)[0]
    end = at + 16 + n
    if xlen != n + 4 or data[end:end + 10] != GZIP_RECORD_SUFFIX:
        return None
    return data[at + 16:end], 16 + n + 10

def gzip_record(data, at):
    first = gzip_fragment(data, at)
    if first is None or len(first[0]) < 16:
        return None
    rec, span = first
    total = 16 + struct.unpack_from("<I", rec, 4)[0]
    while len(rec) < total:
        more = gzip_fragment(data, at + span)
        if more is None:
            return None
        rec += more[0]
        span += more[1]
    return rec

def zstd_record(data, at):
    if data[at:at + 4] != ZSTD_RECORD_MAGIC or at + 8 > len(data):
        return None
    n = struct.unpack_from("<I", data, at + 4)[0]
    return data[at + 8:at + 8 + n]

def records(data):
    """(tag, body) of every record with a good CRC, in file order."""
    if data.startswith(GZIP_RECORD_PREFIX):
        marker, read = GZIP_RECORD_PREFIX, gzip_record
    elif data.startswith(ZSTD_RECORD_MAGIC):
        marker, read = ZSTD_RECORD_MAGIC, zstd_record
    else:
        return
    at = data.find(marker)
    while at >= 0:
        rec = read(data, at)
        if rec is not None and len(rec) >= 16:
            tag, n, crc, reserved = struct.unpack_from("<4sIII", rec)
            body = rec[16:]
            if n == len(body) and zlib.crc32(rec[:8] + body) == crc:
                yield tag, body
        at = data.find(marker, at + 1)

def block_lens(block_size, segment_blocks, image_size, segment, count):
    first = segment * segment_blocks
    return [min(block_size, image_size - (first + i) * block_size) for i in range(count)]

def index_seeds(head, body):
    """Shape-byte prefixed INDX bodies for fuzzing::index_segment: one
    rewritten to pass every check for each shape whose segment has the same
    codec and block lengths (segment number and data offset are patched to
    what it expects), and two plain ones."""
    codec, block_size, segment_blocks, image_size = head
    seed("index_segment", b"\x00" + body)
    seed("index_segment", b"\x01" + body)
    if len(body) < 24:
        return
    segment, _, count = struct.unpack_from("<QQI", body)
    real = block_lens(block_size, segment_blocks, image_size, segment, count)
    members = sum(struct.unpack_from("<I", body, 24 + 40 * i + 32)[0] & ((1 << 28) - 1)
                  for i in range(count))
    if members > 1 << 20:
        return
    for shape in range(256):
        if (shape & 1) != (codec == 2):
            continue
        bs = 4096 << (shape >> 1 & 7)
        k = 1 + (shape >> 4)
        size = (k * 3 - 1) * bs - shape * 7
        blocks = -(-size // bs)
        for s in range(3):
            if s * k >= blocks or min(k, blocks - s * k) != count:
                continue
            if block_lens(bs, k, size, s, count) != real:
                continue
            # fuzzing::index_segment expects segment body[0] % 3 and the
            # members to end at 1 MiB, where it puts the record.
            patched = struct.pack("<QQ", s, (1 << 20) - members) + body[16:]
            seed("index_segment", bytes([shape]) + patched)

for path in sources:
    with open(path, "rb") as f:
        data = f.read()
    head = None
    found = False
    for tag, body in records(data):
        found = True
        if tag == b"HEAD" and len(body) >= 40:
            head = (body[21],) + struct.unpack_from("<IIQ", body, 24)
        elif tag == b"META":
            seed("metadata", body)
        elif tag == b"INDX" and head is not None:
            index_seeds(head, body)
    if found:
        seed("full_verify", data)
    elif b"createType" in data[:65536]:
        seed("descriptor", data)
    else:
        seed("roundtrip", data[:4096])

for target in ["full_verify", "index_segment", "metadata", "descriptor", "roundtrip"]:
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    print(f"{target}: {added.get(target, 0)} new seeds, {len(os.listdir(d))} in {d}")
EOF
