"""One applier per file kind; the transfer feature (``transfer/feature.py``) declares which applies which kind."""
