"""The SAM transform of template.yaml, as the tests need it (run by tests/integration/template.rs
with the project's venv: aws-sam-translator, PyYAML).

Usage: sam_versions.py TEMPLATE CODE_KEY PARAMS_JSON [OUT]
Prints the logical id of the app's AWS::Lambda::Version for these parameters; with OUT, also
writes the whole transformed template there (JSON), for cfn-lint to check what CloudFormation
would receive. CODE_KEY stands for the S3 key `sam package` gives the code (a hash of the code:
the same code, the same key).
"""
import json
import sys

import yaml
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    def load(self):
        return {}


def main():
    path, code_key, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with open(path) as f:
        template = yaml.safe_load(f)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = f"s3://artifacts/{code_key}"
    out = transform(template, params, NoManagedPolicies())
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as f:
            json.dump(out, f, indent=1)
    versions = [
        logical_id
        for logical_id, resource in out["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Version" and logical_id.startswith("UsersApiVersion")
    ]
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
