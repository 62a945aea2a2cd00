"""In-house models (tokenizers and generators), registered like adapters."""
