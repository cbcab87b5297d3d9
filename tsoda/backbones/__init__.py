"""The command line of the one-time backbone imports, ``python -m tsoda.backbones``; the
backbones themselves are in :mod:`tsoda.modeling.backbones`."""
