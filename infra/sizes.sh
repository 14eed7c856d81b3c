#!/usr/bin/env bash
# Builds every function as a release Lambda binary with cargo-lambda, for x86_64 and for arm64
# (Graviton, the template's default), zipped as Lambda takes them, prints each zip's size and
# fails if one is over the limit (OMS_SIZE_LIMIT bytes, default 3 MiB = 3,145,728).
#
# Installs what it needs into the project venv if missing: cargo-lambda, and Zig (`ziglang` from
# PyPI), which cargo-lambda uses to link arm64 binaries on an x86_64 machine; and the Rust
# aarch64 target. The zips land in target/lambda/<arch>/<function>/bootstrap.zip.
#
# Usage: infra/sizes.sh [x86_64|arm64]...   (both when none is named)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${OMS_VENV:-.venv}
limit=${OMS_SIZE_LIMIT:-3145728}
if [ ! -x "$venv/bin/cargo-lambda" ] || ! "$venv/bin/python" -m ziglang version > /dev/null 2>&1; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cargo-lambda>=1.8,<2' 'ziglang>=0.13,<0.18'
fi
export PATH="$PWD/$venv/bin:$PATH"
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 arm64)

packages=()
functions=()
for d in functions/*/; do
  functions+=("$(basename "$d")")
  packages+=(--package "$(basename "$d")")
done

for arch in "${arches[@]}"; do
  case "$arch" in
    # Native here: plain cargo links it.
    x86_64) flags=(--x86-64 --compiler cargo) ;;
    # Cross: cargo-zigbuild (built into cargo-lambda) links with Zig.
    arm64)
      rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
        || rustup target add aarch64-unknown-linux-gnu
      flags=(--arm64 --compiler cargo-zigbuild) ;;
    *) echo "unknown architecture $arch (x86_64 or arm64)" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  # Only the function crates are selected, so oms is built without its `local` feature (no SQLite).
  cargo lambda build --release "${flags[@]}" --output-format zip \
    --lambda-dir "target/lambda/$arch" "${packages[@]}"
  echo "$arch: built in $(( $(date +%s) - start )) s"
done

header=$(printf '%-20s' function)
for arch in "${arches[@]}"; do header+=$(printf ' %13s %13s' "$arch zip" unzipped); done
echo "$header   (MiB, 2^20 bytes; limit $(python3 -c "print(f'{$limit / 1048576:.2f}')") MiB)"
over=0
for f in "${functions[@]}"; do
  line=$(printf '%-20s' "$f")
  for arch in "${arches[@]}"; do
    zip=target/lambda/$arch/$f/bootstrap.zip
    if [ ! -f "$zip" ]; then line+=$(printf ' %13s %13s' missing -); over=1; continue; fi
    read -r zipped unzipped < <(python3 -c 'import os, sys, zipfile; p = sys.argv[1]; print(os.path.getsize(p), sum(i.file_size for i in zipfile.ZipFile(p).infolist()))' "$zip")
    mark=" "
    if [ "$zipped" -gt "$limit" ]; then mark="!"; over=1; fi
    line+=$(printf ' %12.2f%s %13.2f' "$(echo "$zipped / 1048576" | bc -l)" "$mark" "$(echo "$unzipped / 1048576" | bc -l)")
  done
  echo "$line"
done
if [ "$over" -ne 0 ]; then
  echo "a function is over the limit (!) or missing" >&2
  exit 1
fi
