"""Schemathesis hooks for infra/api_fuzz.sh.

1. A schema-valid order body is almost always refused for business reasons the schema cannot state
(the channel key belongs to `web`, SKUs must be in the catalogue at their list price, the total
must add up), so stateful sequences would never get past `POST /orders`. This hook turns every
*schema-valid* generated body into one the demo catalogue accepts: channel `web`, catalogue SKUs
at their CNY list prices, small quantities, no discounts or claimed total. It keeps every other
generated field (customer, contact, address, external id, payment method, fees), and the body
stays schema-valid. Bodies that violate the schema (negative cases) are left exactly as
generated, so the checks that they are refused still run on them.

2. `GET /orders` takes its filters as one exploded object parameter (so that the description can
say "at least one of status, customer or channel" with `anyOf`). Query values are text on the
wire, so Schemathesis' "wrong type" negative cases for its properties can arrive as valid text
(`customer=null`, a valid customer id). The failure filter drops a "schema-violating request
accepted" failure on that route only when the query *as sent* is valid for the parameter's
schema; the run's output counts what it dropped.
"""

import json
import pathlib
import tomllib
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import schemathesis

SPEC = json.loads((pathlib.Path(__file__).parent.parent / "docs" / "openapi.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    {"$ref": "#/components/schemas/OrderInput", "components": SPEC["components"]},
    format_checker=jsonschema.FormatChecker(),
)
# The demo configuration's catalogue, read from the file oms-local is built with: the SKUs that
# are sold and not regulated, with their CNY list prices.
with open(pathlib.Path(__file__).parent.parent / "shared" / "src" / "demo.toml", "rb") as f:
    CATALOGUE = sorted(
        (sku, item["prices"]["CNY"])
        for sku, item in tomllib.load(f)["catalogue"].items()
        if item.get("active", True) and not item.get("regulated", False) and "CNY" in item["prices"]
    )


@schemathesis.hook
def map_body(context, body):
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != ("POST", "/orders"):
        return body
    if not isinstance(body, dict) or not VALIDATOR.is_valid(body):
        return body
    body = dict(body)
    body["channel"] = "web"
    body["currency"] = "CNY"
    lines = []
    for i, line in enumerate(body["lines"][:5]):
        sku, price = CATALOGUE[i % len(CATALOGUE)]
        lines.append({"sku": sku, "quantity": 1 + line["quantity"] % 3, "unit_price": price})
    body["lines"] = lines
    for field in ("total", "order_discount", "discount_code"):
        body.pop(field, None)
    for field in ("shipping_fee", "tax"):
        if field in body:
            body[field] = body[field] % 1000
    assert VALIDATOR.is_valid(body), "the mapped body must stay schema-valid"
    return body


ORDER_FILTER = SPEC["paths"]["/orders"]["get"]["parameters"][0]["schema"]
ORDER_FILTER_VALIDATOR = jsonschema.Draft202012Validator(
    {**ORDER_FILTER, "components": SPEC["components"]},
    format_checker=jsonschema.FormatChecker(),
)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    operation = case.operation
    if failure.code != "ST201" or (operation.method.upper(), operation.path) != ("GET", "/orders"):
        return True
    sent = {}
    for key, value in parse_qsl(urlsplit(response.request.url).query, keep_blank_values=True):
        sent.setdefault(key, value)
    if "limit" in sent:
        try:
            sent["limit"] = int(sent["limit"])
        except ValueError:
            return True
    # Keep the failure unless the request as sent was valid after all.
    return not ORDER_FILTER_VALIDATOR.is_valid(sent)
