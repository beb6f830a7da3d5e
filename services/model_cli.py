"""`linewatch model`: edge/model/cli.py, given the store's history export for
`model train --from-history` (the CLI is the one place that joins edge and store)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def export(a: argparse.Namespace, tree: Path) -> dict[str, Any]:
    """The history tree of the selected camera or line, split by time (services/store)."""
    from broker.config import load_settings
    from services.store.engine import make_engine, require_head
    from services.store.history_export import export_history
    from services.store.settings import StoreSettings

    url = a.db_url or load_settings(StoreSettings).db_url
    engine = make_engine(url)
    try:
        require_head(engine)
        return export_history(
            engine,
            tree,
            camera=a.camera,
            line=a.line,
            since=a.since,
            fraction=a.held_out_fraction,
        )
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    from edge.model.cli import main as model_main

    return model_main(argv, export=export)
