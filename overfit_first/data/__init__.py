"""Data: official sources, download, format parsers, and the prepared-split files the models read."""
