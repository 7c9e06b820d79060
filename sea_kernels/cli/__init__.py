"""The `sea` command line: `main` (parser, dispatch, exit codes), `common` (what the commands
share) and one module per command: `train`, `sweep`, `eval`, `extract`, `bench`, `info`."""
