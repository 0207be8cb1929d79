"""recsae: open up recommendation models with sparse autoencoders (RecSAE)."""

__version__ = "0.1.0"
