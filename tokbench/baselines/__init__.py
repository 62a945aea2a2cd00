"""Offline baseline tokenizers that need no download."""
