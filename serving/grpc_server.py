"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``ModelService``.

PredictionService: ``Predict``, ``GetModelMetadata`` (``signature_def``), ``Classify``
(on classify signatures, ``<task>_classify``, as TF Serving: each ``tf.Example`` carries its
item ids in a bytes feature ``items``; every class comes back with its probability). ``Regress`` and
``MultiInference`` answer UNIMPLEMENTED. ModelService: ``GetModelStatus`` and
``HandleReloadConfigRequest``. The messages are those of ``tensorflow-serving-api``, so
any TF Serving client works against this server and ``peterrec.serving.Client`` works
against ``tensorflow_model_server``.
"""

import logging
from typing import Optional, Tuple

from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from peterrec.serving import classify_requests, errors, signatures, tensors
from peterrec.serving.grpc_ports import host_port, new_grpc_server  # noqa: F401 - host_port: public here too
from peterrec.serving.prediction import Predictor

LOG = logging.getLogger("peterrec.serving")

SIGNATURE_DEF_FIELD = "signature_def"
_STATE_NUMBERS = dict(get_model_status_pb2.ModelVersionStatus.State.items())


def model_spec_of(spec) -> Tuple[str, Optional[int], Optional[str]]:
    """(name, version or None, label or None) of a ``ModelSpec``."""
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version, (spec.version_label or None)


def _answer(context, method, request):
    """Runs a handler; turns errors into gRPC statuses, so no request can break the server."""
    try:
        return method(request)
    except errors.ServingError as error:
        failure = error
    except Exception as error:  # noqa: BLE001 - reported to the client, logged here
        LOG.exception("unexpected error in a gRPC handler")
        failure = errors.ServingError(errors.INTERNAL, f"{type(error).__name__}: {error}")
    context.abort(failure.grpc_code, failure.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService`` over a ``Predictor``."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        """Runs a signature on the request's input tensors (PredictionService.Predict)."""
        return _answer(context, self._predict, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        """The SignatureDefs of the resolved version (PredictionService.GetModelMetadata)."""
        return _answer(context, self._metadata, request)

    def Classify(self, request, context):  # noqa: N802
        """Runs a classification signature on tf.Examples (PredictionService.Classify)."""
        return _answer(context, self._classify, request)

    def Regress(self, request, context):  # noqa: N802
        """Answers UNIMPLEMENTED: peterrec models have no regression signatures."""
        context.abort(errors.ServingError(errors.UNIMPLEMENTED, "").grpc_code,
                      "Regress is not served: peterrec models have no regression signatures")

    def MultiInference(self, request, context):  # noqa: N802
        """Answers UNIMPLEMENTED: use Predict or Classify."""
        context.abort(errors.ServingError(errors.UNIMPLEMENTED, "").grpc_code,
                      "MultiInference is not served; use Predict or Classify")

    def _predict(self, request):
        predictor = self.predictor
        name, version, label = model_spec_of(request.model_spec)
        servable = predictor.resolve(name, version, label)
        runner = predictor.signature(servable, request.model_spec.signature_name)
        inputs = {}
        for key, proto in request.inputs.items():
            predictor.check_input_dtype(runner, key, proto.dtype)
            inputs[key] = tensors.tensor_proto_to_ndarray(proto, key, predictor.limits.max_elements)
        prediction = predictor.run(servable, runner, inputs, list(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = runner.name
        for key, array in prediction.outputs.items():
            tensors.ndarray_to_tensor_proto(array, response.outputs[key])
        return response

    def _metadata(self, request):
        fields = list(request.metadata_field)
        if not fields:
            raise errors.invalid_argument(f"metadata_field is empty; ask for {SIGNATURE_DEF_FIELD!r}")
        unknown = [field for field in fields if field != SIGNATURE_DEF_FIELD]
        if unknown:
            raise errors.invalid_argument(f"unknown metadata_field {unknown}; only {SIGNATURE_DEF_FIELD!r} is served")
        name, version, label = model_spec_of(request.model_spec)
        servable = self.predictor.resolve(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
        return response

    def _classify(self, request):
        name, version, label = model_spec_of(request.model_spec)
        servable = self.predictor.resolve(name, version, label)
        serialized = classify_requests.serialized_examples(request.input)
        runner, outputs = self.predictor.classify(servable, request.model_spec.signature_name, serialized)
        response = classification_pb2.ClassificationResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = runner.name
        classes = outputs[signatures.CLASSIFY_OUTPUT_CLASSES]
        scores = outputs[signatures.CLASSIFY_OUTPUT_SCORES]
        for row in range(scores.shape[0]):
            classifications = response.result.classifications.add()
            for label_name, score in zip(classes[row], scores[row]):
                classifications.classes.add(label=label_name.decode("utf-8", "replace"), score=float(score))
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: model status and config reloads."""

    def __init__(self, manager):
        self.manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        """The state of each version of a model (ModelService.GetModelStatus)."""
        return _answer(context, self._status, request)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        """Serves exactly the models of a new ModelServerConfig; an empty one changes nothing
        (ModelService.HandleReloadConfigRequest)."""
        return _answer(context, self._reload, request)

    def _status(self, request):
        name, version, label = model_spec_of(request.model_spec)
        if not name:
            raise errors.invalid_argument("the request names no model (model_spec.name is empty)")
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self.manager.status(name, version, label):
            entry = response.model_version_status.add(version=status.version, state=_STATE_NUMBERS[status.state])
            entry.status.error_code = errors.CODE_NUMBERS[status.error_code]
            entry.status.error_message = status.error_message
        return response

    def _reload(self, request):
        # A request without a config carries an empty one: TF Serving takes no action on it.
        self.manager.reload_config(request.config)
        return model_management_pb2.ReloadConfigResponse()


def add_services(server, predictor: Predictor, manager) -> None:
    """Adds PredictionService and ModelService over ``predictor`` and ``manager`` to a grpc.Server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(predictor), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)


def create_grpc_server(predictor: Predictor, manager, host: str = "127.0.0.1", port: int = 8500,
                       max_workers: int = 64, max_message_bytes: Optional[int] = None):
    """A started-to-be ``grpc.Server`` bound to ``host:port`` (0 picks a free port).

    Returns ``(server, bound_port)``; raises OSError when the address cannot be bound.
    """
    server, bound = new_grpc_server(host, port, max_workers, max_message_bytes or predictor.limits.max_body_bytes)
    add_services(server, predictor, manager)
    return server, bound
