"""What a Lambda container builds once: settings, dependencies, observability."""
