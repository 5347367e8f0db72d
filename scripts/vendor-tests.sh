#!/usr/bin/env bash
# Runs the vendored crates' own test suites (the subset worth its time, see
# vendor/README.md, "The vendored crates' own tests"), each on the tree in vendor/<crate>.
#
#   scripts/vendor-tests.sh [CRATE...]
#
# vendor/ is not part of the root workspace, and a crate's dev-dependencies are not in the
# root Cargo.lock, so each crate is tested as a workspace of its own: a copy of its tree in
# $CARGO_TARGET_DIR/vendor-src/<crate> (outside the repository; a stable path, so that
# cargo's fingerprints hold between runs), with the Cargo.lock its .crate was published
# with (`cargo test --locked`: the dev-dependencies' versions upstream tested with). The
# first run downloads those dev-dependencies (needs crates.io, as CI has).
# CARGO_TARGET_DIR defaults to target/vendor-tests.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/vendor-tests}
# A suite's build is one nobody debugs or rebuilds piecemeal: no debuginfo, no incremental
# state (a third less build time from a clean target; override by setting them).
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0}
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# crate|cargo test arguments
SUITES=(
  "quinn-proto|--lib"
  "socketioxide-core|--lib"
  "tungstenite|--lib"
  "quinn|--lib --tests"
  "engineioxide|--lib --tests --features v3,tracing,__test_harness"
)

status=0
for suite in "${SUITES[@]}"; do
  name=${suite%%|*}
  args=${suite#*|}
  if (($#)) && [[ " $* " != *" $name "* ]]; then continue; fi
  crate=$("$root/scripts/vendor.sh" --crate-file "$name")
  src=$CARGO_TARGET_DIR/vendor-src/$name
  rm -rf "$src"
  mkdir -p "$src"
  cp -a "$root/vendor/$name/." "$src/"
  tar -xzf "$crate" -O --wildcards '*/Cargo.lock' >"$src/Cargo.lock"
  # A workspace of its own: the copy may sit under the repository (the default target/),
  # whose root manifest would otherwise claim it.
  printf '\n[workspace]\n' >>"$src/Cargo.toml"
  echo "== vendor/$name: cargo test $args" >&2
  start=$SECONDS
  # shellcheck disable=SC2086 # $args is a list of words
  if (cd "$src" && cargo test --locked $args); then
    echo "== vendor/$name: passed in $((SECONDS - start)) s" >&2
  else
    echo "== vendor/$name: FAILED (after $((SECONDS - start)) s)" >&2
    status=1
  fi
done
exit $status
