"""The subcommands of `qaflow`, one module per group, each with `add_parsers(sub, command)` and its handlers."""
