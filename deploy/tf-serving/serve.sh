#!/usr/bin/env bash
# Serves a pipeline's pushed model with the official TF Serving container (NOT RUN BY THE TESTS:
# the container image is not available here). The pipeline's Pusher writes, beside the model base:
#   SERVING_DIR/models.config            model_config_list (name, base_path, version policy, labels)
#   SERVING_DIR/batching_parameters.txt  server-side batching
#   SERVING_DIR/monitoring.config        Prometheus metrics at /monitoring/prometheus/metrics
#   SERVING_DIR/MODEL_NAME/N/            the versions (one SavedModel, a signature per task)
#
# Usage: deploy/tf-serving/serve.sh PIPELINE_ROOT/serving [IMAGE]
# models.config names the absolute base_path the pipeline pushed to, so the folder is mounted at
# the same path inside the container.
set -euo pipefail
SERVING_DIR="$(cd "${1:?usage: serve.sh SERVING_DIR [IMAGE]}" && pwd)"
IMAGE="${2:-tensorflow/serving:2.16.1}"

exec docker run --rm -p 8500:8500 -p 8501:8501 \
  -v "${SERVING_DIR}:${SERVING_DIR}:ro" \
  "${IMAGE}" \
  --port=8500 \
  --rest_api_port=8501 \
  --model_config_file="${SERVING_DIR}/models.config" \
  --model_config_file_poll_wait_seconds=60 \
  --file_system_poll_wait_seconds=30 \
  --enable_batching=true \
  --batching_parameters_file="${SERVING_DIR}/batching_parameters.txt" \
  --monitoring_config_file="${SERVING_DIR}/monitoring.config" \
  --enable_model_warmup=true

# Query it with the same client as the bundled server:
#   peterrec predict --target localhost:8500 --task gender --items s001,s002,s003
# or REST: curl -d '{"signature_name": "gender", "instances": [{"items": ["s001", "s002"]}]}' \
#               localhost:8501/v1/models/peterrec:predict
