"""`python -m sea_kernels.cli` = the `sea` command."""
import sys

from sea_kernels.cli.main import main

sys.exit(main())
