"""qaflow flows: thin Prefect compositions of `tasks`, plus the `qaflow` CLI."""
