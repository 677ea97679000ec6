#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ for every fuzz target (see fuzz/README.md).
#
# Sources are the golden vectors in tests/vectors/. When there are none, it
# makes its own: small `sdar sample-disk` disks (one also behind a VMDK descriptor)
# written to a temporary folder and turned into full images with
# `cargo run -p sdar -- full`. Two VMDK descriptors are always added. The
# golden delta vectors are few and all of one shape, so it always makes
# small fulls and deltas against them too with `sdar full` and `sdar delta`
# (DATA, ZERO and PATCH entries, gzip and zstd fulls and members, grown,
# shrunk, unchanged and empty disks).
#
#   full_verify    every full image, whole
#   index_segment  every INDX record body, behind the shape byte(s) that make
#                  fuzzing::index_segment accept it, and behind plain ones
#   metadata       every META record body
#   descriptor     every VMDK descriptor
#   roundtrip      the first bytes of each raw disk (its input is structured,
#                  so these only give it realistic content to start from)
#   delta_open     every delta archive with its ~2 MB runtime cut to 16 bytes
#                  and to none (the trailer is rewritten to match: payload
#                  offsets are counted from payload_offset, SPEC.md §13), and
#                  the same payloads rewritten into groups of one and of two
#                  entries, so that more than one DMAP record is read
#   delta_verify   u32 length of a full, the full, and a delta made against it
#                  (16-byte runtime), for every delta above
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

# Deltas, with the full each was made against listed in $pairs.
d="$work/delta"
pairs="$work/pairs"
mkdir -p "$d/out"
: >"$pairs"
# The golden delta vectors (in $sources already) against their base full.
for v in "$vectors"/delta-v*.sdar; do
    if [ -f "$v" ]; then
        printf '%s\t%s\n' "$vectors/delta-base-v1-gzip.full.gz" "$v" >>"$pairs"
    fi
done
sdar sample-disk "$d/text" --size 64K --seed 1
sdar sample-disk "$d/zero" --size 64K --seed 2
sdar sample-disk "$d/mixed" --size 64K --seed 4
dcut() { head -c "$2" "$d/$1"; }
poke() { # file, offset, text: change bytes in place
    printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
printf '.encoding = "UTF-8"\ndisplayName = "fuzz-delta-vm"\nuuid.bios = "56 4d 9a 3c 11 22 33 44-55 66 77 88 99 aa bb cd"\nscsi0:0.fileName = "new.vmdk"\n' >"$d/fuzz.vmx"

# 4 KiB blocks (a block is one page, so changes are DATA or ZERO):
# 8 blocks, the middle two zero.
{ dcut mixed 16384; dcut zero 8192; dcut text 8192; } >"$d/b4"
: >"$d/b4-empty"
cp "$d/b4" "$d/n4-same"
cp "$d/b4" "$d/n4-data"
poke "$d/n4-data" 5000 'changed'
poke "$d/n4-data" 30000 'also changed'
cp "$d/b4" "$d/n4-zero"  # block 0 zeroed, zero block 4 written
dd if=/dev/zero of="$d/n4-zero" bs=4096 count=1 conv=notrunc status=none
poke "$d/n4-zero" 17000 'data where zeros were'
{ cat "$d/b4"; dcut text 5000; } >"$d/n4-grown"
{ cat "$d/b4"; dcut zero 100; } >"$d/n4-grown-zero"
head -c 20000 "$d/b4" >"$d/n4-shrunk"  # ends inside zero block 4
head -c 1 "$d/b4" >"$d/n4-shrunk-1"
: >"$d/n4-empty"
# 16 KiB blocks, so a change of at most half a block's 4 KiB pages is a
# PATCH; the last block is 15384 bytes, its last page 3096.
{ dcut mixed 32768; dcut text 31768; } >"$d/b16"
cp "$d/b16" "$d/n16-patch"
poke "$d/n16-patch" $((16384 + 5000)) 'one page'
cp "$d/b16" "$d/n16-patches"
poke "$d/n16-patches" $((32768 + 100)) 'page 0'
poke "$d/n16-patches" $((32768 + 3 * 4096 + 10)) 'page 3'
poke "$d/n16-patches" $((49152 + 3 * 4096 + 3000)) 'short last page'
cp "$d/b16" "$d/n16-data"  # three pages of four: DATA
for page in 0 1 2; do poke "$d/n16-data" $((page * 4096 + 7)) 'most pages'; done
{ cat "$d/n16-patch"; dcut text 1000; } >"$d/n16-grown"

delta() { # base, new, delta codec, extra options...
    local base=$1 new=$2 dc=$3
    shift 3
    local out="$d/out/${new##*/}.${base##*/}.$dc${1:+.${1#--}}.sdar"
    sdar delta "$new" --full "$base" -o "$out" --codec "$dc" --threads 1 \
        --quiet --force "$@"
    printf '%s\t%s\n' "$base" "$out" >>"$pairs"
}
for fc in gzip zstd; do
    for b in b4 b4-empty b16; do
        bs=4K
        [ "$b" = b16 ] && bs=16K
        # Also writes the empty delta $b.$fc.full.sdar beside it.
        sdar full "$d/$b" -o "$d/$b.$fc.full" --codec "$fc" --block-size "$bs" \
            --threads 1 --quiet --force
        printf '%s\t%s\n' "$d/$b.$fc.full" "$d/$b.$fc.full.sdar" >>"$pairs"
    done
    for dc in gzip zstd; do
        for n in "$d"/n4-*; do
            delta "$d/b4.$fc.full" "$n" "$dc"
        done
        delta "$d/b4-empty.$fc.full" "$d/n4-grown" "$dc"
        for n in "$d"/n16-*; do
            delta "$d/b16.$fc.full" "$n" "$dc"
        done
    done
    delta "$d/b16.$fc.full" "$d/n16-patches" zstd --index-only
    delta "$d/b4.$fc.full" "$d/n4-data" zstd --vmx "$d/fuzz.vmx"
done
for f in "$d"/*.full "$d"/*.sdar "$d"/out/*.sdar; do
    sources+=("$f")
done

python3 - "$corpus" "$pairs" "${sources[@]}" <<'EOF'
"""Sorts each source into the corpora, extracting record bodies from full
images by scanning for their containers (SPEC.md §4.2, §4.3) and keeping only
records whose CRC (SPEC.md §4) holds, and cutting the runtime out of delta
archives (SPEC.md §13)."""
import hashlib
import os
import struct
import sys
import zlib

corpus, pairs, sources = sys.argv[1], sys.argv[2], sys.argv[3:]
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

CREATED = struct.pack("<q", 1795000000)

def pin_created(data):
    """`data` with the creation time (key 11, SPEC.md §6.1) of every META
    record in it set to one fixed time and the record's CRC recomputed, so
    that files made again on another day give the same seeds. Identities do
    not cover META (§10), and records sit whole in one gzip member (§4.2)."""
    data = bytearray(data)
    at = data.find(b"META")
    while at >= 0:
        n, crc = struct.unpack_from("<II", data, at + 4) if at + 16 <= len(data) else (0, None)
        body_at = at + 16
        if crc is not None and body_at + n <= len(data) and \
                zlib.crc32(data[at:at + 8] + data[body_at:body_at + n]) == crc:
            p = 0
            while p + 6 <= n:
                key, length = struct.unpack_from("<HI", data, body_at + p)
                if key == 11 and length == 8:
                    data[body_at + p + 6:body_at + p + 14] = CREATED
                p += 6 + length
            crc = zlib.crc32(data[at:at + 8] + data[body_at:body_at + n])
            struct.pack_into("<I", data, at + 8, crc)
        at = data.find(b"META", at + 1)
    return bytes(data)

TRAILER_MAGIC = b"\x89SDDLT\r\n"
FAKE_RUNTIME = b"\x7fELF fuzz runtm"  # 16 bytes standing in for ~2 MB

def payload_of(data):
    """The payload of a delta archive whose trailer checks out, or None."""
    if len(data) < 32 or data[-32:-24] != TRAILER_MAGIC:
        return None
    t = data[-32:]
    if zlib.crc32(t[:28]) != struct.unpack_from("<I", t, 28)[0]:
        return None
    offset, length = struct.unpack_from("<QQ", t, 8)
    if offset + length + 32 != len(data):
        return None
    return data[offset:offset + length]

def archive(payload, runtime=FAKE_RUNTIME):
    """`runtime`, `payload` and a trailer that finds it (SPEC.md §13)."""
    t = TRAILER_MAGIC + struct.pack("<QQHH", len(runtime), len(payload), 1, 0)
    return runtime + payload + t + struct.pack("<I", zlib.crc32(t))

def record(tag, body):
    head = tag + struct.pack("<I", len(body))
    return head + struct.pack("<II", zlib.crc32(head + body), 0) + body

def body_at(payload, at):
    """The body of the plain record at `at` and the offset after it."""
    n = struct.unpack_from("<I", payload, at + 4)[0]
    return payload[at + 16:at + 16 + n], at + 16 + n

def regroup(payload, per_group):
    """The same delta with its entries in DMAP records of `per_group`
    (SPEC.md §14, §16-§18): members move, DDIR, AUTH and DFOT follow."""
    _, at = body_at(payload, 0)
    _, data_start = body_at(payload, at)
    dfot, _ = body_at(payload, len(payload) - 80)
    identity, directory, groups, entries_total, _ = struct.unpack_from("<32sQQQQ", dfot)
    ddir, ddir_end = body_at(payload, directory)
    # A keyed delta's AUTH record, between DDIR and DFOT (SPEC.md §18.1).
    auth = payload[ddir_end:len(payload) - 80]
    entries = []
    for g in range(groups):
        dmap, _ = body_at(payload, struct.unpack_from("<Q", ddir, 8 + 16 * g)[0])
        for i in range(struct.unpack_from("<I", dmap, 16)[0]):
            e = dmap[24 + 64 * i:88 + 64 * i]
            offset, length = struct.unpack_from("<QI", e, 16)
            entries.append((e, payload[offset:offset + length]))
    out = bytearray(payload[:data_start])
    directory_entries = []
    for g, first in enumerate(range(0, len(entries), per_group)):
        chunk = entries[first:first + per_group]
        body = bytearray(struct.pack("<QQII", g, len(out), len(chunk), 0))
        for e, member in chunk:
            e = bytearray(e)
            if member:
                struct.pack_into("<Q", e, 16, len(out))
                out += member
            body += e
        directory_entries.append(struct.pack("<QQ", len(out), struct.unpack_from("<Q", chunk[0][0])[0]))
        out += record(b"DMAP", bytes(body))
    directory = len(out)
    out += record(b"DDIR", struct.pack("<Q", len(directory_entries)) + b"".join(directory_entries))
    out += auth
    out += record(b"DFOT", struct.pack("<32sQQQQ", identity, directory, len(directory_entries),
                                       entries_total, 0))
    return bytes(out)

def payloads(payload):
    """The payload as made, and regrouped when that makes more DMAP records."""
    yield payload
    dfot, _ = body_at(payload, len(payload) - 80)
    groups, entries = struct.unpack_from("<QQ", dfot, 40)
    for per_group in (1, 2):
        if -(-entries // per_group) > groups:
            yield regroup(payload, per_group)

for path in sources:
    with open(path, "rb") as f:
        data = pin_created(f.read())
    payload = payload_of(data)
    if payload is not None:
        for p in payloads(payload):
            seed("delta_open", archive(p))
            seed("delta_open", archive(p, b""))
        continue
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

with open(pairs) as f:
    for line in f:
        full_path, delta_path = line.rstrip("\n").split("\t")
        with open(full_path, "rb") as f:
            full = pin_created(f.read())
        with open(delta_path, "rb") as f:
            payload = payload_of(pin_created(f.read()))
        for p in payloads(payload):
            seed("delta_verify", struct.pack("<I", len(full)) + full + archive(p))

for target in ["full_verify", "index_segment", "metadata", "descriptor", "roundtrip",
               "delta_open", "delta_verify"]:
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    print(f"{target}: {added.get(target, 0)} new seeds, {len(os.listdir(d))} in {d}")
EOF
