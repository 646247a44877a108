"""Shared test helpers for ``tests/saving``: tamper with a saved ``.tapefit`` file's config."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def edit_config(path: str | Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the archive at ``path`` with ``edit`` applied in place to its ``config.json``."""
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
