"""Run by the SAM CLI's own interpreter: each route's security per ApiAuthorization value.

It expands AWS::LanguageExtensions and applies the SAM transform exactly as a deploy would,
then prints {"AWS_IAM": {"POST /services": [...], ...}, "NONE": {...}} as JSON.
"""

import json
import sys

from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "machinery",
}

with open(sys.argv[1]) as source:
    text = source.read()
security = {}
for value in ("AWS_IAM", "NONE"):
    template = yaml_parse(text)
    template = expand_language_extensions(
        template, parameter_values={"ApiAuthorization": value, **PSEUDO}, enabled=True
    ).expanded_template
    for resource in template["Resources"].values():  # the translator wants S3 code locations
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    resources = transform(template, {"ApiAuthorization": value}, None)["Resources"]
    [api] = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    security[value] = {
        f"{method.upper()} {path}": operation.get("security")
        for path, methods in api["Properties"]["Body"]["paths"].items()
        for method, operation in methods.items()
    }
print(json.dumps(security))
