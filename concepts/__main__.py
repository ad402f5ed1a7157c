"""`python -m concepts ...`: see concepts/cli.py."""

from .cli import main

raise SystemExit(main())
