"""The whole stack in one process tree: ``sitepulse serve`` and ``sitepulse demo``.

The composition root: the only package that may import every other one (it runs their roles as
child processes and prepares the demo site), and the one no other package imports.
"""
