"""annotrace: find where OCI image metadata is dropped between an image and the runtime."""

__version__ = "0.1.0"
