"""Run by the SAM CLI's own interpreter: templates as a deploy would make them.

Reads {name: {"template": path, "parameters": {...}}} as JSON on stdin. For each, it expands
AWS::LanguageExtensions and applies the SAM transform exactly as `sam deploy` does, then
prints {name: the transformed template's Resources} as one JSON object.
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
    # the local runtime's stack (machinery_core/local/runtime.py STACK): a name built from it,
    # such as the state machine's ARN in the roles, is then the one the recording names
    "AWS::StackName": "machinery-local",
}

texts: dict[str, str] = {}
deployed = {}
for name, job in json.load(sys.stdin).items():
    if job["template"] not in texts:
        with open(job["template"]) as source:
            texts[job["template"]] = source.read()
    parameters = job["parameters"]
    template = yaml_parse(texts[job["template"]])
    template = expand_language_extensions(
        template, parameter_values={**parameters, **PSEUDO}, enabled=True
    ).expanded_template
    for resource in template["Resources"].values():  # the translator wants S3 code locations
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    deployed[name] = transform(template, parameters, None)["Resources"]
print(json.dumps(deployed))
