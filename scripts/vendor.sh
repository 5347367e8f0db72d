#!/usr/bin/env bash
# Rebuilds vendor/<crate> from the crate as published on crates.io plus its patches
# (vendor/patches/<crate>/NNNN-*.patch, applied in order with `patch -p1`), see
# vendor/README.md.
#
#   scripts/vendor.sh            rebuild every vendored crate into vendor/<crate>
#   scripts/vendor.sh CRATE...   rebuild only these
#   scripts/vendor.sh --check    rebuild into a temporary folder and compare with vendor/:
#                                exits 1 naming every difference (nothing is written)
#   scripts/vendor.sh --crate-file CRATE
#                                print the path of CRATE's published .crate (fetched if
#                                needed; scripts/vendor-tests.sh takes its Cargo.lock)
#
# A vendored tree is the .crate's files (Cargo.toml as cargo normalized it, Cargo.toml.orig,
# .cargo_vcs_info.json, ...) except its Cargo.lock, patched, plus a PATCHES.md written here:
# the index of its patches (their file names and subjects).
#
# Where the .crate comes from: cargo's registry cache ($CARGO_HOME/registry/cache/*/). The
# root Cargo.lock does not list these crates (they are patched), so a missing one is fetched
# with `cargo fetch` of a throwaway crate that depends on exactly that version (needs
# crates.io; CI and developers reach it), falling back to a plain download. Either way the
# file must match the sha256 below (the checksum of crates.io's index), so a tree is always
# built from the published bytes.
#
# Only bash, tar, patch, diff and sha256sum: extracting a tarball and applying patches is
# what those tools do; no library would make it shorter.
set -euo pipefail

# name version sha256-of-the-.crate (from crates.io's index: `cksum`)
CRATES=(
  "engineioxide 0.17.9 0615980857185ecc33fed6ec417ec64fe3e427bf1de0471bb3594132f453bdbe"
  "quinn 0.11.12 4051e23e9185c255a7e33ef59cdbca87a22d359052eecd22fc6b901fb37d9d11"
  "quinn-proto 0.11.19 0e750cca55fe4f0439a15d0bb529da9651e79993e8e72c61a899a36d462befbe"
  "socketioxide-core 0.20.0 2d7f9e1d60fccd6c70b158e5f0d6715f5aad5c3a49cfee0a5a4eb8edf75d1311"
  "tungstenite 0.30.0 e48ac77174b19c110a50ab2128b24215ac9cb40e0e12e093fb602d175c569d22"
)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vendor=$root/vendor
cargo_home=${CARGO_HOME:-$HOME/.cargo}

check=0
print_crate=0
only=()
for arg in "$@"; do
  case $arg in
    --check) check=1 ;;
    --crate-file) print_crate=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "vendor.sh: unknown option $arg" >&2; exit 2 ;;
    *) only+=("$arg") ;;
  esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vendor-sh.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The cached .crate of NAME VERSION, or nothing.
cached_crate() {
  local f
  for f in "$cargo_home"/registry/cache/*/"$1-$2.crate"; do
    [[ -f $f ]] && { echo "$f"; return; }
  done
}

# Prints the path of a .crate of NAME VERSION whose sha256 is SUM, fetching it if needed.
crate_file() {
  local name=$1 version=$2 sum=$3 f
  f=$(cached_crate "$name" "$version")
  if [[ -z $f ]]; then
    echo "vendor.sh: fetching $name $version (not in cargo's registry cache)" >&2
    local tc=$work/fetch-$name
    mkdir -p "$tc/src"
    : >"$tc/src/lib.rs"
    printf '[package]\nname = "vendor-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n[workspace]\n' \
      "$name" "$version" >"$tc/Cargo.toml"
    (cd "$tc" && cargo fetch --quiet) >&2 || echo "vendor.sh: cargo fetch failed" >&2
    f=$(cached_crate "$name" "$version")
  fi
  if [[ -z $f ]]; then
    f=$work/$name-$version.crate
    curl -sSfL --retry 2 -o "$f" "https://static.crates.io/crates/$name/$name-$version.crate" >&2 ||
      { echo "vendor.sh: cannot get $name $version" >&2; return 1; }
  fi
  if [[ $(sha256sum "$f" | cut -d' ' -f1) != "$sum" ]]; then
    echo "vendor.sh: $f does not have the published checksum $sum" >&2
    return 1
  fi
  echo "$f"
}

# Builds NAME VERSION (sha256 SUM) with its patches into folder OUT.
build() {
  local name=$1 version=$2 sum=$3 out=$4 crate p
  crate=$(crate_file "$name" "$version" "$sum") || return 1
  mkdir -p "$work/x-$name"
  tar -xzf "$crate" -C "$work/x-$name" || return 1
  rm -rf "$out"
  mv "$work/x-$name/$name-$version" "$out" || return 1
  rm -f "$out/Cargo.lock"
  {
    echo "# $name $version, patched for p2p-relay"
    echo
    echo "Written by scripts/vendor.sh: this folder is the published crate (crates.io, without its"
    echo "Cargo.lock) with these patches applied, in this order (see vendor/README.md):"
    echo
  } >"$out/PATCHES.md"
  for p in "$vendor/patches/$name"/[0-9][0-9][0-9][0-9]-*.patch; do
    [[ -f $p ]] || continue
    if ! patch -d "$out" -p1 -s -N -F0 --no-backup-if-mismatch <"$p" >"$work/patch.log" 2>&1; then
      cat "$work/patch.log" >&2
      echo "vendor.sh: $name: ${p#"$root"/} does not apply to $name $version; resolve the" \
        "rejected hunks (*.rej in $out), then regenerate the patch (vendor/README.md)" >&2
      return 1
    fi
    echo "- \`vendor/patches/$name/$(basename "$p")\`: $(sed -n 's/^Subject: \(\[PATCH[^]]*\] \)\{0,1\}//p' "$p" | head -n1)" >>"$out/PATCHES.md"
  done
}

status=0
for entry in "${CRATES[@]}"; do
  read -r name version sum <<<"$entry"
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  if ((print_crate)); then
    f=$(crate_file "$name" "$version" "$sum")
    # A downloaded file lives in $work, removed on exit: keep a copy beside the registry's.
    if [[ $f == "$work"/* ]]; then
      mkdir -p "$cargo_home/registry/cache/vendor-sh"
      mv "$f" "$cargo_home/registry/cache/vendor-sh/"
      f=$cargo_home/registry/cache/vendor-sh/$(basename "$f")
    fi
    echo "$f"
    continue
  fi
  if ((check)); then
    build "$name" "$version" "$sum" "$work/$name"
    if ! diff -r "$work/$name" "$vendor/$name" >"$work/diff" 2>&1; then
      echo "vendor.sh --check: vendor/$name is not $name $version plus vendor/patches/$name:" >&2
      sed -e "s|$work/$name|(rebuilt)|g" -e "s|$vendor/|vendor/|g" "$work/diff" | grep -E '^(Only in|diff|Files)' >&2 ||
        sed -e "s|$work/$name|(rebuilt)|g" "$work/diff" >&2
      status=1
    fi
  else
    # Built beside and then swapped in, so a failed patch leaves vendor/<crate> as it was
    # (the half-patched tree, with its .rej files, stays in vendor/.<crate>.new).
    build "$name" "$version" "$sum" "$vendor/.$name.new" || { trap - EXIT; rm -rf "$work"; exit 1; }
    rm -rf "$vendor/$name"
    mv "$vendor/.$name.new" "$vendor/$name"
    echo "vendor/$name: $name $version + $(ls "$vendor/patches/$name" | grep -c '\.patch$') patch(es)"
  fi
done
if ((check)); then
  ((status == 0)) && echo "vendor.sh --check: vendor/ matches the published crates plus their patches"
fi
exit $status
