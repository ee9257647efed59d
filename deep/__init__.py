"""Torch implementations of the fixpoint-rl algorithms (install the ``deep`` extra).

Losses and projections are thin adapters over the backend-neutral closed forms in
``fixpoint_rl.tabular.core``; this package never imports the Numba kernels in
``fixpoint_rl.tabular._kernels`` (a kernel called from a torch path would silently leave autograd
and the GPU). A test checks that rule in a subprocess.
"""
