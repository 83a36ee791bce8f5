"""``python -m align3d_ad`` runs the command line (also what ``torchrun -m align3d_ad`` starts)."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
