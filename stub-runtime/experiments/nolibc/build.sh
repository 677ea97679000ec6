#!/usr/bin/env bash
# Builds the probe (nightly: core and alloc are rebuilt, with memcpy & co.)
# and prints its size. Extra arguments go to cargo, e.g.
#   ./build.sh --no-default-features --features rust-zstd
set -euo pipefail
cd "$(dirname "$0")"
# Build output goes to the workspace's ignored target folder.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-../../../target/nolibc-probe}
export CARGO_ENCODED_RUSTFLAGS=$(printf '%s\x1f' \
    -Crelocation-model=static -Ctarget-feature=+crt-static \
    -Clink-arg=-nostartfiles -Clink-arg=-nostdlib -Clink-arg=-static | sed 's/\x1f$//')
cargo +nightly build --release --target x86_64-unknown-linux-gnu \
    -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem "$@"
bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/sdar-nolibc-probe
ls -l "$bin"
file "$bin"
