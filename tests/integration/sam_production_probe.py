"""Run by the SAM CLI's own interpreter: what a deploy makes of template.yaml's production settings.

For each StateMachineType value it expands AWS::LanguageExtensions and applies the SAM
transform exactly as a deploy would (the throttling parameters given as argv[2] and argv[3]),
then prints {"STANDARD": {...}, "EXPRESS": {...}} as JSON, each with the state machine's
LoggingConfiguration, its role's policy statements, the HTTP API stage's AccessLogSettings and
DefaultRouteSettings, and every log group's properties by logical id.
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
throttling = {"ApiThrottlingBurstLimit": sys.argv[2], "ApiThrottlingRateLimit": sys.argv[3]}
deployed = {}
for kind in ("STANDARD", "EXPRESS"):
    parameters = {"StateMachineType": kind, "ApiAuthorization": "AWS_IAM", **throttling}
    template = yaml_parse(text)
    template = expand_language_extensions(
        template, parameter_values={**parameters, **PSEUDO}, enabled=True
    ).expanded_template
    for resource in template["Resources"].values():  # the translator wants S3 code locations
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    resources = transform(template, parameters, None)["Resources"]
    [machine] = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    role = resources[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    [stage] = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    deployed[kind] = {
        "logging": machine["Properties"].get("LoggingConfiguration"),
        "role_statements": [
            statement
            for policy in role["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
        ],
        "access_log_settings": stage["Properties"].get("AccessLogSettings"),
        "default_route_settings": stage["Properties"].get("DefaultRouteSettings"),
        "log_groups": {
            name: resource["Properties"]
            for name, resource in resources.items()
            if resource["Type"] == "AWS::Logs::LogGroup"
        },
    }
print(json.dumps(deployed))
