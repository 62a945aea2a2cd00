"""Neural building blocks shared by adapters and in-house models."""
