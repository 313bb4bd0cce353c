"""``python -m taichi_pvd_cli``: the same as the ``pvd-ti`` command."""

from .main import main

main()
