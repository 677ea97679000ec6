#!/usr/bin/env bash
# The restore runtime's size, as `sdar` embeds it, and what it is made of.
#
#   bench/runtime-size.sh            size, then cargo-bloat's table by crate
#   bench/runtime-size.sh -n 40      ... and the 40 largest functions
#
# The runtime comes from `cargo build --release -p sdar` (packer/build.rs
# picks how: nightly with std rebuilt, else stable musl, else glibc). The
# breakdown needs symbols, so it rebuilds the same runtime unstripped in
# target/runtime-size with cargo-bloat (cargo install cargo-bloat).
set -euo pipefail
cd "$(dirname "$0")/.."

functions=0
if [ "${1:-}" = "-n" ]; then functions=${2:?-n needs a count}; fi

cargo build --release -p sdar --quiet
stub=$(ls -t target/release/build/sdar-*/out/stub-target/*/*/stub/sdar-stub | head -n 1)
triple=$(basename "$(dirname "$(dirname "$stub")")")
toolchain=$(basename "$(dirname "$(dirname "$(dirname "$stub")")")")
echo "runtime: $stub"
echo "target:  $triple ($toolchain toolchain)"
echo "size:    $(stat -c %s "$stub") bytes"
echo "file:    $(file -b "$stub")"

if ! command -v cargo-bloat >/dev/null 2>&1; then
    echo "no breakdown: cargo-bloat is not installed (cargo install cargo-bloat)"
    exit 0
fi
# As packer/build.rs built it (its recipe, written beside the runtime's
# target folder), with symbols kept.
# shellcheck source=/dev/null
. "$(dirname "$(dirname "$(dirname "$stub")")")/sdar-stub.env"
export CARGO_PROFILE_STUB_STRIP=false
bloat=(cargo)
if [ "$stub_toolchain" = nightly ]; then bloat+=(+nightly); fi
bloat+=(bloat "${stub_cargo_args[@]}" --profile stub -p sdar-stub --bin sdar-stub
    --target "$stub_target" --target-dir "target/runtime-size/$stub_toolchain")
echo
"${bloat[@]}" --crates -n 15 2>/dev/null
if [ "$functions" -gt 0 ]; then
    echo
    "${bloat[@]}" -n "$functions" 2>/dev/null
fi
