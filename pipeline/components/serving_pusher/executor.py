"""``ServingPusherExecutor``: TFX's Pusher executor for a TF Serving model base."""

import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, proto_utils

from peterrec.pipeline.components.common import VERSION_LABEL_KEY, is_local


class ServingPusherExecutor(pusher_executor.Executor):
    """TFX's Pusher (filesystem destination) with integer versions, atomic publish and models.config.

    The model is copied to a hidden staging folder inside the model base and renamed to the
    next integer version, so a polling server never loads half a model; then
    ``models.config`` (and, when missing, the batching and monitoring files) beside the model
    base is updated (``peterrec.serving.serving_files``). ``custom_config``
    ``{"version_label": "canary"}`` points that label at the new version. Remote destinations
    (``gs://``...) get TFX's own copy (saved_model.pb last) with the next integer version;
    there ``models.config`` is not written (keep it with the server, e.g. the ConfigMap of
    ``deploy/kubernetes/tf-serving.yaml``).
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """Pushes the blessed model as the next version; marks the ModelPushPath artifact."""
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            print("push: the model is not blessed; nothing pushed", flush=True)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties["push_destination"], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("ServingPusherExecutor pushes to a filesystem destination only")
        base = destination.filesystem.base_directory
        custom = json.loads(exec_properties.get("custom_config") or "null") or {}
        if is_local(base):
            version, serving_path = _push_local(model_path, os.path.abspath(base), custom.get(VERSION_LABEL_KEY))
        else:
            version, serving_path = _push_remote(model_path, base)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
        print(f"push: version {version} -> {serving_path}", flush=True)


def _push_local(model_path: str, base: str, label):
    """Stages the model inside ``base``, publishes it as the next version, updates models.config.

    Crash-safe like ``peterrec export`` (``peterrec.serving.crash_safe``): the copy goes to a
    locked hidden staging folder, is fsynced, and is renamed into place; a push killed half way
    leaves only a staging folder that the server never reads and the next push removes. The
    policy is pinned to the versions served now before the rename, so a labelled version is not
    unloaded between the rename and the ``models.config`` update.
    """
    from peterrec.serving import assembly, crash_safe, serving_files

    os.makedirs(base, exist_ok=True)
    crash_safe.remove_stale_staging(base)
    with crash_safe.ExportStaging(base) as staging:
        io_utils.copy_dir(model_path, staging.model_dir)
        crash_safe.fsync_tree(staging.model_dir)
        serving_files.pin_served_versions(base, label)
        version, serving_path = assembly.publish_version(staging.model_dir, base)
        crash_safe.fsync_dir(base)
    serving_files.update_serving_files(base, version, label=label)
    return version, serving_path


def _push_remote(model_path: str, base: str):
    """Copies the model to the next integer version under a remote ``base`` (saved_model.pb last)."""
    existing = [int(n.rstrip("/")) for n in fileio.listdir(base) if n.rstrip("/").isascii() and n.rstrip("/").isdigit()] \
        if fileio.exists(base) else []
    version = max(existing, default=0) + 1
    serving_path = os.path.join(base, str(version))
    io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r"saved_model\.pb"])
    io_utils.copy_file(os.path.join(model_path, "saved_model.pb"), os.path.join(serving_path, "saved_model.pb"))
    return version, serving_path
