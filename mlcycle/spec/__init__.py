"""The lifecycle spec: loading, schema validation, taxonomy rules and patterns."""
