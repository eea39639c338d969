"""The `machinery` command and its API client (never shipped to Lambda)."""
