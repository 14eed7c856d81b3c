#!/usr/bin/env bash
# Runs every test of the workspace, on a fresh machine too:
#   1. makes a Python venv with the moto server (a DynamoDB + SQS endpoint), cfn-lint, the SAM
#      translator, cargo-lambda (the smoke test runs the real function binaries under it) and
#      Schemathesis if missing,
#   2. starts moto on a free port on 127.0.0.1 and points the AWS contract tests at it,
#   3. checks formatting, clippy and the deployment template and its JWT variant (cfn-lint, and
#      the SAM translator as deploy runs it), runs every test
#      (cargo-nextest if installed, else cargo test) with the AWS suite required, not skipped,
#   4. runs Schemathesis against a live oms-local (infra/api_fuzz.sh: every check, stateful
#      sequences, at least 10,000 requests, zero failures), and prints the request count,
#   5. drives the staff dashboard and the customer order page in headless Chromium against a live
#      oms-local with the demo's orders (infra/browser.sh; screenshots in target/browser/),
#   6. stops moto, whatever happened.
# Environment: OMS_VENV (venv directory, default .venv at the workspace root).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${OMS_VENV:-.venv}
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/cargo-lambda" ] \
  || [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/python" -c 'import samtranslator' 2>/dev/null; then
  echo "==> preparing $venv with moto[server], cfn-lint, cargo-lambda and schemathesis"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' 'cfn-lint>=1.20,<2' \
    'cargo-lambda>=1.8,<2' 'schemathesis==4.32.5' 'aws-sam-translator>=1.90,<2'
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
"$venv/bin/python" infra/moto_server.py "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/moto-api/"
for _ in range(300):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit("moto did not start within 30 s: see target/moto.log")
PY
echo "==> moto listening on 127.0.0.1:$port"
export OMS_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
export OMS_TEST_REQUIRE_AWS=1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cfn-lint and the SAM translator: infra/template.yaml and its JWT variant"
"$venv/bin/python" infra/staff_jwt.py https://issuer.example.com/oms oms-staff target/template-jwt.yaml
"$venv/bin/cfn-lint" infra/template.yaml target/template-jwt.yaml
"$venv/bin/python" infra/sam_check.py infra/template.yaml target/template-jwt.yaml
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> tests"
if cargo nextest --version > /dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi
echo "==> API fuzz (Schemathesis against a live oms-local)"
OMS_VENV="$venv" ./infra/api_fuzz.sh
echo "==> pages in a browser (headless Chromium against a live oms-local)"
OMS_VENV="$venv" ./infra/browser.sh
