"""`python -m app.cli`: the same as the `loom` console script."""
from __future__ import annotations

from app.cli.group import main

main()
