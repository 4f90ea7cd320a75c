"""``ServingModelAssemblerExecutor``: builds the multi-task serving model from the blessed patches."""

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.utils import io_utils

from peterrec.pipeline.components.common import (
    ASSEMBLY_FILE, BACKBONE_KEY, BLESSING_KEY, BLESSING_PREFIX, MAX_LEN_KEY, MODEL_KEY, MODEL_NAME_KEY,
    PATCH_PREFIX, REQUIRE_ALL_KEY, TASK_NAMES_KEY, TOP_K_KEY, backbone_dir_of, is_blessed, local_copy,
    patch_dir_of, single, write_blessing, write_text)


class ServingModelAssemblerExecutor(base_executor.BaseExecutor):
    """Assembles the blessed tasks' patches and the backbone into one serving SavedModel."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """See ``ServingModelAssembler``."""
        self._log_startup(input_dict, output_dict, exec_properties)
        task_names = json.loads(exec_properties[TASK_NAMES_KEY])
        model_name = exec_properties[MODEL_NAME_KEY]
        require_all = bool(int(exec_properties.get(REQUIRE_ALL_KEY) or 0))
        backbone_dir = backbone_dir_of(single(input_dict[BACKBONE_KEY], BACKBONE_KEY))
        blessed, rejected = [], []
        for name in task_names:
            blessing = single(input_dict[BLESSING_PREFIX + name], BLESSING_PREFIX + name)
            (blessed if is_blessed(blessing) else rejected).append(name)
        output_model = single(output_dict[MODEL_KEY], MODEL_KEY)
        output_blessing = single(output_dict[BLESSING_KEY], BLESSING_KEY)
        summary = {"model_name": model_name, "tasks": blessed, "not_blessed": rejected,
                   "backbone": backbone_dir, "require_all_tasks": require_all}
        if not blessed or (require_all and rejected):
            reason = (f"tasks not blessed: {rejected}" + ("; require_all_tasks is on" if blessed else
                                                           "; no task is blessed"))
            write_blessing(output_blessing, False, reason, {"tasks": blessed, "not_blessed": rejected})
            write_text(os.path.join(output_model.uri, ASSEMBLY_FILE), json.dumps(summary, indent=2))
            print(f"assemble: nothing to serve ({reason})", flush=True)
            return
        patch_dirs = {name: patch_dir_of(single(input_dict[PATCH_PREFIX + name], PATCH_PREFIX + name))
                      for name in blessed}
        result = _assemble(backbone_dir, patch_dirs, model_name, int(exec_properties[TOP_K_KEY]),
                           int(exec_properties[MAX_LEN_KEY]), os.path.join(output_model.uri, "Format-Serving"))
        summary.update({"signatures": result.signatures, "size_lines": result.sizes.lines()})
        write_text(os.path.join(output_model.uri, ASSEMBLY_FILE), json.dumps(summary, indent=2))
        output_model.set_string_custom_property("signatures", ",".join(result.signatures))
        output_model.set_string_custom_property("tasks", ",".join(blessed))
        reason = f"serves {blessed}" + (f"; left out (not blessed): {rejected}" if rejected else "")
        write_blessing(output_blessing, True, reason, {"tasks": blessed, "not_blessed": rejected})
        for line in result.sizes.lines():
            logging.info("assembly: %s", line)
        print(f"assemble: {model_name} with signatures {', '.join(result.signatures)}"
              + (f" (left out, not blessed: {', '.join(rejected)})" if rejected else ""), flush=True)


def _assemble(backbone_dir: str, patch_dirs: Dict[str, str], model_name: str, top_k: int, max_len: int,
              serving_dir: str):
    """Exports the serving model in a local work folder and copies it to ``serving_dir``."""
    from peterrec.serving import assembly

    work = tempfile.mkdtemp(prefix="peterrec-assembly-")
    try:
        inputs = os.path.join(work, "inputs")
        os.makedirs(inputs)
        task_arguments = [f"{name}={local_copy(path, inputs)}" for name, path in patch_dirs.items()]
        result = assembly.export_serving_model(
            local_copy(backbone_dir, inputs), task_arguments, os.path.join(work, model_name),
            top_k=top_k, max_len=max_len, write_serving_files=False,
            log=lambda message: logging.info("assembly: %s", message))
        io_utils.copy_dir(result.path, serving_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
