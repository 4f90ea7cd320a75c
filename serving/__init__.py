"""Serving: one SavedModel for many tasks, a TF-Serving-compatible server and its client.

Importing this package is cheap; the heavy pieces load on first use::

    from peterrec.serving import Client, Server

- ``signatures``: the signature contract every served model follows (contract 5).
- ``model_config``: TF Serving's ``models.config``, batching parameters and monitoring files.
- ``model_manager``: loads SavedModel versions, polls for new ones, unloads per policy.
- ``batching``: merges concurrent Predict calls on one signature into one model call.
- ``grpc_server`` / ``rest_server`` / ``server``: TF Serving's gRPC and REST APIs.
- ``client``: ``Client(target)`` speaking the same protos (works against tensorflow_model_server).
"""

import importlib

_LAZY = {
    "Client": "peterrec.serving.client",
    "Server": "peterrec.serving.server",
    "ServingError": "peterrec.serving.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'peterrec.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
