"""The production files in deploy/ (not built or applied here) parse and agree with the code:
image versions match the lock file, TF Serving reads the files the Pusher writes, ports match,
and the commands they run are real ``peterrec`` subcommands."""

import os
import re
import shlex

import pytest

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")


def _read(*parts):
    with open(os.path.join(DEPLOY, *parts), encoding="utf-8") as handle:
        return handle.read()


def _locked(package):
    with open(os.path.join(ROOT, "requirements", "lock.txt"), encoding="utf-8") as handle:
        match = re.search(rf"^{re.escape(package)}==([^\s;]+)", handle.read(), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements/lock.txt"
    return match.group(1)


def _documents(name):
    return [doc for doc in yaml.safe_load_all(_read("kubernetes", name)) if doc]


def test_images_match_the_locked_versions():
    dockerfile = _read("Dockerfile")
    assert f"FROM apache/beam_python3.10_sdk:{_locked('apache-beam')}" in dockerfile
    assert "requirements/lock.txt" in dockerfile and "--no-deps ." in dockerfile
    serving = _locked("tensorflow-serving-api")
    assert f"tensorflow/serving:{serving}" in _read("tf-serving", "serve.sh")
    images = [c["image"] for doc in _documents("tf-serving.yaml") if doc["kind"] == "Deployment"
              for c in doc["spec"]["template"]["spec"]["containers"]]
    assert images == [f"tensorflow/serving:{serving}"]


def test_tf_serving_reads_the_files_the_pusher_writes():
    from peterrec.serving import model_config

    docs = {(doc["kind"], doc["metadata"]["name"]): doc for doc in _documents("tf-serving.yaml")}
    config_map = docs[("ConfigMap", "peterrec-serving-config")]["data"]
    assert set(config_map) == {model_config.MODELS_CONFIG_FILE, model_config.BATCHING_PARAMETERS_FILE,
                               model_config.MONITORING_CONFIG_FILE}
    entries = model_config.entries_of(model_config.parse_model_config(config_map[model_config.MODELS_CONFIG_FILE]))
    assert [e.name for e in entries] == ["peterrec"] and entries[0].base_path.startswith("gs://")
    model_config.BatchingParameters.from_text(config_map[model_config.BATCHING_PARAMETERS_FILE])
    model_config.MonitoringConfig.from_text(config_map[model_config.MONITORING_CONFIG_FILE])

    container = docs[("Deployment", "peterrec-serving")]["spec"]["template"]["spec"]["containers"][0]
    args = dict(arg.lstrip("-").split("=", 1) for arg in container["args"])
    mount = container["volumeMounts"][0]["mountPath"]
    assert args["model_config_file"] == f"{mount}/{model_config.MODELS_CONFIG_FILE}"
    assert args["batching_parameters_file"] == f"{mount}/{model_config.BATCHING_PARAMETERS_FILE}"
    assert args["monitoring_config_file"] == f"{mount}/{model_config.MONITORING_CONFIG_FILE}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (int(args["port"]), int(args["rest_api_port"])) == (ports["grpc"], ports["http"]) == (8500, 8501)
    service = docs[("Service", "peterrec-serving")]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"grpc", "http"}

    script = _read("tf-serving", "serve.sh")
    for name in (model_config.MODELS_CONFIG_FILE, model_config.BATCHING_PARAMETERS_FILE,
                 model_config.MONITORING_CONFIG_FILE):
        assert f"${{SERVING_DIR}}/{name}" in script


def test_manifest_commands_are_peterrec_subcommands():
    from peterrec.cli import build_parser

    parser = build_parser()
    commands = []
    for name in ("pipeline-job.yaml", "tensorboard.yaml"):
        for doc in _documents(name):
            spec = doc.get("spec", {})
            template = spec.get("template", {}).get("spec", {})
            commands += [c["command"] for c in template.get("containers", []) if "command" in c]
    assert len(commands) == 2
    for command in commands:
        assert command[0] == "peterrec"
        args = parser.parse_args(command[1:])
        assert args.handler.__module__ == "peterrec.pipeline.cli", command
    kustomization = yaml.safe_load(_read("kubernetes", "kustomization.yaml"))
    for resource in kustomization["resources"]:
        assert os.path.exists(os.path.join(DEPLOY, "kubernetes", resource))


def test_the_serve_script_is_a_valid_shell_command():
    script = _read("tf-serving", "serve.sh")
    command = script[script.index("exec docker run"):].split("\n\n")[0].replace("\\\n", " ")
    words = shlex.split(command)
    assert words[:3] == ["exec", "docker", "run"]
    assert "--enable_batching=true" in words and "--port=8500" in words and "--rest_api_port=8501" in words
