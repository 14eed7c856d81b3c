#!/usr/bin/env bash
# Builds every function as a release Lambda binary (x86_64 here; pass --arm64 for Graviton) with
# cargo-lambda, zipped as Lambda takes it, and prints each zip's size. Installs cargo-lambda into
# the project venv if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${OMS_VENV:-.venv}
if [ ! -x "$venv/bin/cargo-lambda" ]; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cargo-lambda>=1.8'
fi
export PATH="$PWD/$venv/bin:$PATH"
arch=${1:---x86-64}
packages=()
for d in functions/*/; do packages+=(--package "$(basename "$d")"); done
cargo lambda build --release --compiler cargo "$arch" --output-format zip "${packages[@]}"
printf '%-20s %12s %12s\n' function zipped unzipped
for d in functions/*/; do
  f=$(basename "$d")
  d=target/lambda/$f
  [ -f "$d/bootstrap.zip" ] || continue
  zipped=$(stat -c %s "$d/bootstrap.zip")
  unzipped=$(python3 -c 'import sys, zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$d/bootstrap.zip")
  printf '%-20s %9.2f MB %9.2f MB\n' "$f" "$(echo "$zipped / 1048576" | bc -l)" "$(echo "$unzipped / 1048576" | bc -l)"
done
