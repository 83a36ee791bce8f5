"""What commands print on stdout."""

from __future__ import annotations

import json
import os
import sys


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + os.linesep)
