"""Translates deployment templates with the SAM translator, as CloudFormation's
AWS::Serverless transform does at deploy time, and fails on any error it reports (cfn-lint does
not run the transform, so a SAM property it would refuse otherwise passes unseen).

Usage: python3 infra/sam_check.py TEMPLATE...
Local code paths (CodeUri, ContentUri) are given S3 locations first, as `sam package` would.
"""

import os
import re
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    def get_policies(self):
        return {}


def check(path: str) -> list[str]:
    text = open(path).read()
    text = re.sub(r"(\n\s+CodeUri:) \S+", r"\1 s3://bucket/code.zip", text)
    text = re.sub(r"(\n\s+ContentUri:) \S+", r"\1 s3://bucket/layer.zip", text)
    tmp = path + ".samcheck.yaml"
    with open(tmp, "w") as f:
        f.write(text)
    try:
        template, matches = decode(tmp)
        if matches:
            return [str(m) for m in matches]
        out = transform(template, {"AWS::Region": "us-east-1"}, NoManagedPolicies())
        return [] if out.get("Resources") else ["the translation has no resources"]
    except Exception as e:  # the translator reports every problem in one exception
        return [f"{type(e).__name__}: {e}"]
    finally:
        os.remove(tmp)


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    failed = False
    for path in sys.argv[1:]:
        problems = check(path)
        for p in problems:
            print(f"{path}: {p}")
        failed |= bool(problems)
        if not problems:
            print(f"{path}: SAM translates it")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
