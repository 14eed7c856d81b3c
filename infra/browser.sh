#!/usr/bin/env bash
# The pages in a real browser: starts oms-local on a fresh data directory, plays the demo into it
# over HTTP, places one order that review holds, then drives /dashboard and /track in headless
# Chromium (infra/browser_test.py, Playwright from PyPI with Debian's chromium: no browser is
# downloaded). Screenshots go to target/browser/.
# Installs what it needs: Debian's chromium (apt-get, as root) and playwright in the venv.
# Usage: infra/browser.sh [path to oms-local, default target/debug/oms-local]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${OMS_VENV:-.venv}
bin=${1:-target/debug/oms-local}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "==> installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium > /dev/null 2>&1 || { apt-get update -qq > /dev/null && apt-get install -y -qq chromium > /dev/null; }
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import playwright' 2>/dev/null \
  || "$venv/bin/pip" install --quiet --disable-pip-version-check 'playwright>=1.50,<2'
if [ "$#" -eq 0 ]; then cargo build --quiet -p oms-local; fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export OMS_STAFF_TOKEN="browser-staff-$RANDOM$RANDOM"
"$bin" --port "$port" --data-dir "$work/data" --create > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
url="http://127.0.0.1:$port"
python3 - "$port" <<'PY'
import sys, time, socket
for _ in range(300):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("oms-local did not start within 30 s")
PY
echo "==> demo orders into $url"
"$bin" demo --url "$url" --orders 60 --seed 11 > "$work/demo.txt" 2>&1 || { cat "$work/demo.txt"; exit 1; }
tail -n 4 "$work/demo.txt"
echo "==> one order that review holds (60 units: an unusual quantity)"
python3 - "$url" <<'PY'
import json, sys, time, urllib.request, os
url = sys.argv[1]
order = {
    "channel": "web", "external_id": f"browser-held-{int(time.time())}",
    "customer": {"id": "BROWSER-1", "name": "Han Meimei", "email": "han@example.com", "phone": "+8613900000001"},
    "lines": [{"sku": "TEA-001", "quantity": 60, "unit_price": 4990}],
    "currency": "CNY",
    "shipping_address": {"name": "Han Meimei", "phone": "+8613900000001", "country": "CN", "region": "Shanghai",
                         "city": "Shanghai", "line1": "8 Century Ave", "postal_code": "200120"},
    "payment_method": "prepaid",
}
req = urllib.request.Request(url + "/orders", data=json.dumps(order).encode(), method="POST",
                             headers={"content-type": "application/json",
                                      "authorization": "Bearer dev-channel-key-web"})
placed = json.load(urllib.request.urlopen(req))
oid = placed.get("order_id") or placed.get("id")
token = os.environ["OMS_STAFF_TOKEN"]
for _ in range(100):
    r = urllib.request.Request(f"{url}/orders/{oid}", headers={"authorization": f"Bearer {token}"})
    if json.load(urllib.request.urlopen(r))["status"] == "on_hold":
        print(f"held: {oid}")
        sys.exit(0)
    time.sleep(0.2)
sys.exit(f"order {oid} was not held by review")
PY
rm -rf target/browser
CHROMIUM="$chromium" "$venv/bin/python" infra/browser_test.py --url "$url" --token "$OMS_STAFF_TOKEN" --out target/browser
