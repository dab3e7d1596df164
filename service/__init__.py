"""Personalized product-search ranking service."""

__version__ = "0.1.0"
