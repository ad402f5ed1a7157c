"""`python -m concepts ...`: see concepts/cli.py."""

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported: no import-time advice

from .cli import main  # noqa: E402

raise SystemExit(main())
