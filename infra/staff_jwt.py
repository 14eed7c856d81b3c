"""Writes the deployment template with staff behind API Gateway's JWT authorizer.

Usage: python3 infra/staff_jwt.py ISSUER AUDIENCE [OUT]
  ISSUER    the OIDC issuer URL (Cognito: https://cognito-idp.<region>.amazonaws.com/<pool id>)
  AUDIENCE  the audience the tokens carry (Cognito: the app client id)
  OUT       where to write it (default infra/template-jwt.yaml)

infra/template.yaml lets staff in with named staff keys. SAM takes a route's authorizer only as a
literal name, not through a condition, so the JWT variant is this script's output: the same
template with a `StaffJwt` authorizer on the API, every staff route of the orders-api function
behind it (the customer look-up and return stay open, as do the channel and provider routes),
and OMS_STAFF_AUTH=jwt on that function so it names the caller from the token's `email` and
role from `cognito:groups` (`oms-viewer`, `oms-operator`, `oms-admin`). Deploy it with
`sam build --beta-features --template template-jwt.yaml` from infra/.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Routes of the orders-api function that are not staff routes: they stay without an authorizer.
OPEN = {("GET", "/orders/lookup"), ("POST", "/orders/{id}/return")}


def jwt_template(text: str, issuer: str, audience: str) -> str:
    api = "  Api:\n    Type: AWS::Serverless::HttpApi\n    Properties:\n"
    if api not in text:
        raise SystemExit("infra/template.yaml has no Api resource in the expected shape")
    text = text.replace(
        api,
        api
        + "      Auth:\n"
        + "        Authorizers:\n"
        + "          StaffJwt:\n"
        + '            IdentitySource: "$request.header.Authorization"\n'
        + "            JwtConfiguration:\n"
        + f'              issuer: "{issuer}"\n'
        + f'              audience: ["{audience}"]\n',
        1,
    )
    start = text.index("\n  OrdersApiFunction:\n")
    end = re.search(r"\n  \S", text[start + 3 :]).start() + start + 3
    block = text[start:end]
    block = block.replace(
        "      Description: OMS orders-api\n",
        "      Description: OMS orders-api\n"
        + "      Environment:\n"
        + "        Variables:\n"
        + "          OMS_STAFF_AUTH: jwt\n",
        1,
    )
    routes = 0

    def guard(m: re.Match) -> str:
        nonlocal routes
        path, method = m.group(1), m.group(2)
        if (method, path) in OPEN:
            return m.group(0)
        routes += 1
        return m.group(0) + "            Auth:\n              Authorizer: StaffJwt\n"

    block = re.sub(r"            Path: (\S+)\n            Method: (\S+)\n", guard, block)
    if routes < 15:
        raise SystemExit(f"only {routes} staff routes found in OrdersApiFunction")
    return text[:start] + block + text[end:]


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    issuer, audience = sys.argv[1], sys.argv[2]
    out = pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else ROOT / "infra" / "template-jwt.yaml"
    text = (ROOT / "infra" / "template.yaml").read_text()
    out.write_text(jwt_template(text, issuer, audience))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
