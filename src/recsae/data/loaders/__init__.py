"""Loaders, one module per source format; each returns the raw (unfiltered) ``InteractionDataset``."""
