"""qaflow tasks: plain, typed units of work (no Prefect needed to call or test them)."""
