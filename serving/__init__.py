"""Serving: one SavedModel for many tasks, a TF-Serving-compatible server and its client.

Importing this package is cheap; the heavy pieces load on first use::

    from peterrec.serving import Client, Server

- ``signatures``: the signature contract every served model follows (contract 5).
- ``assembly``: ``peterrec export``, one multi-task SavedModel version from a backbone and patches,
  built from ``served_tasks`` (patch artifacts on one backbone), ``weight_sharing`` (each task's
  own weights, packed and swapped into shared forwards), ``serving_module`` (the SavedModel root
  and its signatures) and ``size_report``; ``serving_files`` and ``warmup`` write what TF
  Serving reads beside it.
- ``model_config``: TF Serving's ``models.config``, batching parameters and monitoring files.
- ``servable``: one SavedModel version found on disk, loaded and warmed up, run per signature.
- ``model_manager``: loads versions, polls for new ones, unloads per policy.
- ``batching``: merges concurrent Predict calls on one signature into one model call.
- ``prediction``: the request path both front ends share.
- ``grpc_server`` / ``rest_server`` (+ ``rest_json``) / ``server``: TF Serving's gRPC and REST APIs.
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
