"""Drives the staff dashboard (/dashboard) and the customer's order page (/track) in Chromium.

Against a running OMS with some orders in it: at least one held by review (GET /reviews) and one
delivered, with a shipment (GET /orders?status=delivered). The script reads those through the API,
then checks the pages at desktop (1280x900) and phone (390x844) width, approves the held order
from the dashboard, and asks for a return of one unit of the delivered order from the order page.
Screenshots go to --out. One line per passed check; exit 1 with the reason on the first failure.

Needs the `playwright` package from PyPI (python3 -m pip install playwright) and a Chromium on the
machine (CHROMIUM, default /usr/bin/chromium); it never downloads a browser.

Usage: python3 infra/browser_test.py --url http://127.0.0.1:3000 --token <staff key> --out /tmp/shots
"""

import argparse
import json
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
CANVASES = ["chart-funnel", "chart-time", "chart-channel", "chart-region"]
WAIT_MS = 30_000


class Failed(Exception):
    """A check that did not pass; the message says which and why."""


def passed(what):
    print(f"PASS {what}", flush=True)


def check(cond, what):
    if not cond:
        raise Failed(what)


class Api:
    """The OMS HTTP API through urllib, with the staff key."""

    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, staff=True):
        headers = {"Accept": "application/json"}
        if staff:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=20) as res:
                return res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()
        except urllib.error.URLError as e:
            raise Failed(f"{method} {path}: the OMS at {self.base} cannot be reached ({e.reason})")

    def json(self, path):
        status, _, body = self.call("GET", path)
        if status != 200:
            detail = body.decode(errors="replace")[:300]
            try:
                detail = json.loads(body).get("detail", detail)
            except ValueError:
                pass
            raise Failed(f"GET {path} answered {status}: {detail}")
        return json.loads(body)

    def order(self, order_id):
        return self.json(f"/orders/{urllib.parse.quote(order_id)}")

    def wait_status(self, order_id, accept, what, seconds=10.0):
        """Polls GET /orders/{id} until accept(status); the pipeline moves orders asynchronously."""
        deadline = time.monotonic() + seconds
        status = None
        while True:
            status = self.order(order_id).get("status")
            if accept(status):
                return status
            if time.monotonic() > deadline:
                raise Failed(f"{what}: order {order_id} is still {status} after {seconds:.0f} s")
            time.sleep(0.5)


def prepare(api):
    """Finds a held order and a delivered one (with its number and contact) through the API."""
    me = api.json("/staff/me")
    passed(f"API: staff key accepted (name {me.get('name')}, role {me.get('role')})")

    held = [o for o in api.json("/reviews?limit=100").get("orders", []) if o.get("status") == "on_hold"]
    if not held:
        raise Failed("no held order: GET /reviews lists no order with status on_hold; place one that review holds first")
    held = held[0]
    passed(f"API: held order {held.get('number') or held['id']} found in /reviews")

    page = api.json("/orders?status=delivered&limit=20").get("orders", [])
    candidates = []
    for summary in page:
        view = api.order(summary["id"])
        customer = view.get("customer") or {}
        contact = customer.get("email") or customer.get("phone")
        if not view.get("number") or not contact or view.get("status") != "delivered":
            continue
        tracked = any(s.get("tracking_number") for s in view.get("shipments") or [])
        candidates.append((not tracked, bool(view.get("returns")), view, contact))
    if not candidates:
        raise Failed("no delivered order with a number and an e-mail or phone: GET /orders?status=delivered&limit=20 found none")
    candidates.sort(key=lambda c: (c[0], c[1]))  # with a tracking number and no return first
    _, _, delivered, contact = candidates[0]
    passed(f"API: delivered order {delivered['number']} found (contact {'e-mail' if '@' in contact else 'phone'})")
    return held, delivered, contact


class Browser:
    """Pages of one Chromium; remembers uncaught script errors and assets that did not load."""

    def __init__(self, chromium):
        self.chromium = chromium
        self.problems = []
        self.last_page = None

    def page(self, viewport):
        ctx = self.chromium.new_context(viewport=viewport, locale="en-US", timezone_id="UTC")
        page = ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: self.problems.append(f"script error on {page.url}: {e}"))
        page.on("response", lambda r: self._asset(r))
        self.last_page = page
        return page

    def _asset(self, response):
        if "/assets/" in response.url and response.status != 200:
            self.problems.append(f"{response.url} answered {response.status}")

    def assert_clean(self, what):
        if self.problems:
            raise Failed(f"{what}: " + "; ".join(self.problems))


def wait_for(page, selector, what, state="visible"):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, state=state, timeout=WAIT_MS)
    except PlaywrightTimeout:
        status = page.evaluate("() => (document.querySelector('#status, #message') || {}).textContent || ''")
        raise Failed(f"{what}: {selector} did not appear within {WAIT_MS // 1000} s" + (f" (page says: {status.strip()})" if status.strip() else ""))


def wait_until(page, script, arg, what):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(script, arg=arg, timeout=WAIT_MS)
    except PlaywrightTimeout:
        status = page.evaluate("() => (document.querySelector('#status, #message') || {}).textContent || ''")
        raise Failed(f"{what} (within {WAIT_MS // 1000} s)" + (f"; page says: {status.strip()}" if status.strip() else ""))


def no_horizontal_scroll(page, what):
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    check(sizes[0] <= sizes[1] + 1, f"{what}: scrolls sideways (scrollWidth {sizes[0]} > innerWidth {sizes[1]})")
    passed(f"{what}: no horizontal scroll at {sizes[1]} px (scrollWidth {sizes[0]})")


def open_dashboard(b, base, token, viewport, what):
    page = b.page(viewport)
    page.goto(f"{base}/dashboard#token={urllib.parse.quote(token, safe='')}")
    wait_for(page, 'body[data-ready="1"]', f"{what}: the dashboard did not finish loading", state="attached")
    check(page.evaluate("() => location.hash") == "", f"{what}: the token stayed in the URL")
    status = page.evaluate("() => { const s = document.querySelector('#status'); return [s.className, s.textContent]; }")
    check("error" not in status[0], f"{what}: the dashboard shows an error: {status[1].strip()}")
    passed(f"{what}: loaded without errors, token taken out of the URL")
    for canvas in CANVASES:
        points = page.get_attribute(f"#{canvas}", "data-points")
        check(points is not None and points.isdigit() and int(points) > 0,
              f"{what}: chart #{canvas} is empty (data-points={points!r})")
        passed(f"{what}: chart #{canvas} has {points} data points")
    return page


def dashboard_desktop(b, api, base, token, out, held, delivered):
    what = "dashboard 1280"
    page = open_dashboard(b, base, token, DESKTOP, what)

    orders = (page.text_content('#kpis [data-kpi="orders"] .value') or "").strip()
    check(re.search(r"\d", orders), f"{what}: the orders KPI shows no number ({orders!r})")
    passed(f"{what}: KPI orders = {orders}")
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)
    passed(f"{what}: screenshot {out / 'dashboard.png'}")

    # Approve the held order from the review queue.
    button = page.locator(f'#reviews .approve[data-id="{held["id"]}"]')
    check(button.count() == 1, f"{what}: no approve button for held order {held['id']} in #reviews")
    button.click()
    wait_until(page, "() => { const s = document.querySelector('#status'); return s.classList.contains('ok') || s.classList.contains('error'); }",
               None, f"{what}: approving gave no answer in #status")
    status = page.evaluate("() => { const s = document.querySelector('#status'); return [s.className, s.textContent]; }")
    check("ok" in status[0].split(), f"{what}: approving failed: {status[1].strip()}")
    passed(f"{what}: approve clicked; page says: {status[1].strip()}")
    now = api.wait_status(held["id"], lambda s: s != "on_hold", f"{what}: approve")
    passed(f"{what}: held order {held.get('number') or held['id']} is now {now} (API)")

    # Search for the delivered order and open it.
    number = delivered["number"]
    page.fill("#search-q", number)
    page.click("#search-go")
    link = page.locator("#search-results a[data-id]", has_text=number).first
    try:
        link.wait_for(timeout=WAIT_MS)
    except Exception:
        raise Failed(f"{what}: searching {number} listed no link to it")
    passed(f"{what}: search for {number} lists it")
    link.click()
    wait_until(page, "n => { const h = document.querySelector('#order-number'); const o = document.querySelector('#order');"
                     " return o && !o.hidden && h && h.textContent.includes(n); }",
               number, f"{what}: the order panel did not show {number}")
    shown = page.text_content("#order") or ""
    check(delivered["id"] in shown, f"{what}: the order panel does not show the order id")
    passed(f"{what}: order panel shows order {number}")
    page.screenshot(path=str(out / "dashboard-order.png"), full_page=True)
    b.assert_clean(what)
    page.context.close()


def dashboard_wrong_key(b, base):
    what = "dashboard wrong key"
    page = b.page(PHONE)
    page.goto(f"{base}/dashboard#token=not-a-valid-key")
    wait_for(page, "#signin:not([hidden]) #token", f"{what}: no sign-in form after a refused key")
    check(page.evaluate("() => sessionStorage.length") == 0, f"{what}: a refused key stayed in sessionStorage")
    passed(f"{what}: refused key shows the sign-in form")
    page.context.close()


def dashboard_phone(b, base, token, out):
    what = "dashboard 390"
    page = open_dashboard(b, base, token, PHONE, what)
    no_horizontal_scroll(page, what)
    page.screenshot(path=str(out / "dashboard-phone.png"), full_page=True)
    passed(f"{what}: screenshot {out / 'dashboard-phone.png'}")
    b.assert_clean(what)
    page.context.close()


def find_order(page, number, contact):
    page.fill("#number", number)
    page.fill("#contact", contact)
    page.click("#find")


def track_phone(b, api, base, out, delivered, contact):
    what = "track 390"
    number = delivered["number"]
    page = b.page(PHONE)
    page.goto(f"{base}/track")

    wrong = "nobody@example.invalid" if "@" in contact else "+8613000000000"
    find_order(page, number, wrong)
    wait_for(page, 'body[data-state="not-found"]', f"{what}: a wrong contact did not give not-found", state="attached")
    message = (page.text_content("#message") or "").strip()
    check("No order" in message, f"{what}: not-found message is {message!r}")
    passed(f"{what}: wrong contact -> {message}")

    find_order(page, number, contact)
    wait_for(page, 'body[data-state="found"]', f"{what}: the right number and contact did not find the order", state="attached")
    status = (page.text_content("#order-status") or "").strip()
    check("delivered" in status.lower(), f"{what}: #order-status says {status!r}, not delivered")
    passed(f"{what}: order {number} found, status {status}")
    check(contact not in page.url and urllib.parse.quote(contact, safe="") not in page.url,
          f"{what}: the contact is in the page URL {page.url}")
    stored = page.evaluate("() => sessionStorage.length + localStorage.length + document.cookie.length")
    check(stored == 0, f"{what}: the page stored something (sessionStorage/localStorage/cookies)")
    passed(f"{what}: contact not in the URL, nothing stored")
    tracking = [t.strip() for t in page.locator(".shipment .tracking-number").all_text_contents()]
    expected = {s.get("tracking_number") for s in delivered.get("shipments") or [] if s.get("tracking_number")}
    check(any(t and t in expected for t in tracking) if expected else any(tracking),
          f"{what}: no shipment with a tracking number (page {tracking}, API {sorted(expected)})")
    passed(f"{what}: shipment with tracking number {', '.join(t for t in tracking if t)}")
    no_horizontal_scroll(page, what)
    page.screenshot(path=str(out / "track-phone.png"), full_page=True)
    passed(f"{what}: screenshot {out / 'track-phone.png'}")

    # Return one unit of the first line.
    quantities = page.locator("#return-form .return-qty")
    check(quantities.count() > 0, f"{what}: no return form (can.return is false for order {number}?)")
    first_sku = quantities.nth(0).get_attribute("data-sku")
    for i in range(quantities.count()):
        quantities.nth(i).fill("1" if i == 0 else "0")
    page.fill("#return-reason", "damaged in transit")
    page.click("#request-return")
    wait_until(page, "() => { const m = document.querySelector('#message'); return m.classList.contains('ok') || m.classList.contains('error'); }",
               None, f"{what}: requesting the return gave no answer in #message")
    message = (page.text_content("#message") or "").strip()
    check("ok" in (page.get_attribute("#message", "class") or "").split(), f"{what}: the return failed: {message}")
    passed(f"{what}: return of 1 x {first_sku} requested; page says: {message}")
    now = api.wait_status(delivered["id"], lambda s: s == "return_requested", f"{what}: return")
    passed(f"{what}: order {number} is now {now} (API)")

    # The invoice link.
    link = page.locator("#invoice")
    check(link.count() == 1, f"{what}: no invoice link")
    check(link.get_attribute("target") == "_blank", f"{what}: the invoice link does not open a new tab")
    href = urllib.parse.urljoin(base + "/", link.get_attribute("href") or "")
    res = page.request.get(href)
    ctype = res.headers.get("content-type", "")
    check(res.status == 200, f"{what}: invoice answered {res.status}")
    check(ctype.startswith("text/html"), f"{what}: invoice is {ctype!r}, not text/html")
    check(number in res.text(), f"{what}: the invoice does not name order {number}")
    passed(f"{what}: invoice link answers 200 text/html naming {number}")
    b.assert_clean(what)
    page.context.close()


def track_desktop(b, base, out, delivered, contact):
    what = "track 1280"
    page = b.page(DESKTOP)
    page.goto(f"{base}/track")
    find_order(page, delivered["number"], contact)
    wait_for(page, 'body[data-state="found"]', f"{what}: the order was not found", state="attached")
    page.screenshot(path=str(out / "track.png"), full_page=True)
    passed(f"{what}: screenshot {out / 'track.png'}")
    b.assert_clean(what)
    page.context.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="base URL of a running OMS, e.g. http://127.0.0.1:3000")
    ap.add_argument("--token", required=True, help="staff key (operator or admin: the test approves an order)")
    ap.add_argument("--out", required=True, help="directory for the screenshots (created)")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("FAIL the playwright package is missing: python3 -m pip install playwright", file=sys.stderr)
        return 2

    api = Api(base, args.token)
    b = None
    try:
        held, delivered, contact = prepare(api)
        executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        if not os.path.exists(executable):
            raise Failed(f"no Chromium at {executable} (set CHROMIUM)")
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            b = Browser(chromium)
            try:
                dashboard_desktop(b, api, base, args.token, out, held, delivered)
                dashboard_wrong_key(b, base)
                dashboard_phone(b, base, args.token, out)
                track_phone(b, api, base, out, delivered, contact)
                track_desktop(b, base, out, delivered, contact)
            except Exception:
                if b.last_page is not None and not b.last_page.is_closed():
                    try:
                        b.last_page.screenshot(path=str(out / "failure.png"), full_page=True)
                        print(f"(screenshot of the failing page: {out / 'failure.png'})", file=sys.stderr)
                    except Exception:
                        pass
                raise
            finally:
                chromium.close()
    except Failed as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a Playwright error outside the checks (browser did not start, ...)
        print(f"FAIL {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("all browser checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
