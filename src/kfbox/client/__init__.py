"""The Python client of kfbox's own HTTP API, used by the CLI, the workflows and the load tester.

Users import from here::

    from kfbox.client import ApiClient
    api = ApiClient.connect()
"""

from kfbox.client.api import ApiClient, error_from_response, resolve_url
from kfbox.client.registry import RegistryClient

__all__ = ["ApiClient", "RegistryClient", "error_from_response", "resolve_url"]
