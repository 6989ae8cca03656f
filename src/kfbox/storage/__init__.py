"""Artifact and model storage URIs: ``file://``, ``pvc://``, ``s3://`` and ``model-registry://``."""

from kfbox.storage.uris import SCHEMES, RegistryLookup, UriResolver, safe_join

__all__ = ["SCHEMES", "RegistryLookup", "UriResolver", "safe_join"]
