#!/usr/bin/env bash
# Fuzzes the decoders that read what clients send, for a bounded time:
#
#  1. the proptest targets (tests/e2e/fuzz_wire.rs, tests/e2e/fuzz_payload.rs) with many more cases
#     than `cargo test` runs (PROPTEST_CASES, default 200000 per property);
#  2. the libFuzzer (cargo-fuzz) targets in fuzz/: the native frame decoder, the stream
#     header, and the Socket.IO payload translation, FUZZ_SECONDS each (default 60), from the
#     committed corpus in fuzz/corpus/<target>.
#
# libFuzzer needs `-Zsanitizer=address`, a nightly flag. The project's machines have only
# the stable toolchain, whose sysroot ships the sanitizer runtimes all the same, so the
# targets are built here with RUSTC_BOOTSTRAP=1 (which lets stable rustc take -Z flags) and
# the same flags `cargo fuzz build` passes; the cargo-fuzz binary is not needed (when it is
# installed, `RUSTC_BOOTSTRAP=1 cargo fuzz run <target>` works as well). A C++ compiler is
# needed for libFuzzer itself (libfuzzer-sys builds it). FUZZ_LIBFUZZER=0 skips step 2.
#
# Inputs that libFuzzer finds interesting go to target/fuzz-corpus/<target> (not
# committed); FUZZ_MERGE=1 merges them into fuzz/corpus/<target>, keeping it minimal.
# A crash is written to fuzz/artifacts/<target>/ and makes the script fail: turn it into a
# regression test beside the proptest targets.
#
# Run on the development machine (2 cores, stable 1.95 with RUSTC_BOOTSTRAP), 60 s per
# target: frame_decoder 3.3 million inputs, stream_header 12.2 million, socketio_payload
# 1.1 million, and the proptest targets with 20,000 cases each: nothing found.
#
#   scripts/fuzz.sh                              # ~4 minutes (and the first build, ~10)
#   FUZZ_SECONDS=3600 PROPTEST_CASES=5000000 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
CASES="${PROPTEST_CASES:-200000}"
TARGETS=(frame_decoder stream_header socketio_payload)
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"

echo "== proptest targets, ${CASES} cases per property"
started=$(date +%s)
PROPTEST_CASES="$CASES" FUZZ_CASES="$CASES" \
  timeout $((SECONDS_PER_TARGET * 10 + 600)) \
  cargo test --release --test e2e fuzz_
echo "   done in $(( $(date +%s) - started )) s"

if [ "${FUZZ_LIBFUZZER:-1}" = "0" ]; then
  exit 0
fi

echo "== libFuzzer targets (${TRIPLE}), ${SECONDS_PER_TARGET} s each"
# What `cargo fuzz build` (0.12) passes. --target keeps them off build scripts and proc
# macros, which must not be instrumented.
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$TRIPLE" --bins
bins="fuzz/target/$TRIPLE/release"

status=0
for target in "${TARGETS[@]}"; do
  work="target/fuzz-corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$work" "$artifacts" "fuzz/corpus/$target"
  echo "-- $target"
  if ! "$bins/$target" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
      -artifact_prefix="$artifacts/" -rss_limit_mb=2048 -max_len=4096 \
      "$work" "fuzz/corpus/$target" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)"; then
    :
  fi
  if ls "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* >/dev/null 2>&1; then
    echo "!! $target: a crash was found, see $artifacts"
    status=1
  fi
  if [ "${FUZZ_MERGE:-0}" = "1" ]; then
    # Inputs of at most 512 bytes, so that the committed corpus stays small.
    "$bins/$target" -merge=1 -max_len=512 "fuzz/corpus/$target" "$work" >/dev/null 2>&1
  fi
done
exit $status
