"""The local runtime: template.yaml deployed into an in-process moto (docs/architecture.md)."""
