"""The `sea` command line: `main` (parser, dispatch, exit codes), one module per command
(`train`, `sweep`, `compare`, `eval`, `extract`, `bench`, `info`) and what the commands share, by
concern: `errors`, `arguments`, `preflight`, `inputs`, `outputs`."""
