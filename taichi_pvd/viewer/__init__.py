"""The web viewer (``pvd-ti view``, ``--view`` of ``train`` and ``distill``): a viser page whose
camera the user moves, showing frames of one or two runs rendered by
:mod:`taichi_pvd.rendering` on the run's device.

Modules: :mod:`.cameras` (viser's camera <-> the renderer's), :mod:`.sources` (what is viewed:
a run folder or a learning loop), :mod:`.resolution` (render size that keeps the frame rate),
:mod:`.compositing` (RGB / depth / difference, split or side by side, captions),
:mod:`.controls` (the GUI), :mod:`.session` (the server and its render loop). Only
:mod:`.session` and :mod:`.controls` import viser (the optional extra ``viewer``).
"""
