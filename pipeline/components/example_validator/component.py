"""``StrictExampleValidator``: TFX's ExampleValidator component with the strict executor."""

from tfx.components.example_validator import component as example_validator_component
from tfx.dsl.components.base import executor_spec

from peterrec.pipeline.components.example_validator.executor import StrictExampleValidatorExecutor


class StrictExampleValidator(example_validator_component.ExampleValidator):
    """TFX's ExampleValidator with ``StrictExampleValidatorExecutor``: anomalies stop the run."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(StrictExampleValidatorExecutor)
