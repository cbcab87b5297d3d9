"""tsoda: training, export, evaluation and the semi-supervised loop on TF Model Garden.

The training engine arrives with its own issue; this package holds its place in the layout.
"""
