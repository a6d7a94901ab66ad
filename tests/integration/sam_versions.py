"""Which AWS::Lambda::Version the SAM transform gives the app for a given set of parameters.

Usage: sam_versions.py TEMPLATE CODE_KEY PARAMS_JSON
Prints the logical id of the app's version. CODE_KEY stands for the S3 key `sam package` gives
the code (it is a hash of the code: the same code, the same key). Run by
tests/integration/template.rs with the project's venv (aws-sam-translator, PyYAML).
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
    versions = [
        logical_id
        for logical_id, resource in out["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Version" and logical_id.startswith("UsersApiVersion")
    ]
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
