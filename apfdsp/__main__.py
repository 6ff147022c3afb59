"""``python -m apfdsp``: the apfdsp command line."""

from .cli import main

raise SystemExit(main())
