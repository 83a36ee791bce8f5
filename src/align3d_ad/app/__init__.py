"""The ``align3d-ad`` command-line application: parser, one module per command, run folders, demo.

The library never imports from here; every command calls the same Python API a notebook uses
(exported at the top of :mod:`align3d_ad`).
"""

from .cli import EXIT_USER_ERROR, main

__all__ = ["EXIT_USER_ERROR", "main"]
