"""``python -m apfdsp``: the apfdsp command line (docs/architecture.md, section 2.27)."""

from .cli import console_main

raise SystemExit(console_main())
