"""``python -m dimalib.cli train ...``: the ``dimalib`` command."""

from dimalib.cli import main

raise SystemExit(main())
