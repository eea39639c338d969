"""The domain: models, errors, the pure engine, mapping, validation and diagrams.

Imports no boto3, botocore, requests or urllib3 (import-linter checks it)."""
