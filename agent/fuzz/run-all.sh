#!/bin/sh
# Runs every fuzz target for SECONDS (default 600) each, one after the other, from the committed seeds.
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -eu
cd "$(dirname "$0")"
seconds=${1:-600}
for target in packet config machine; do
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "fuzz-$target.log" | grep -E "^(Done|stat::|==|SUMMARY)" || true
done
