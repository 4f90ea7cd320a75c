"""``LocalStatisticsGen``: TFX's StatisticsGen component with the local-aware executor."""

from tfx.components.statistics_gen import component as statistics_gen_component
from tfx.dsl.components.base import executor_spec

from peterrec.pipeline.components.statistics_gen.executor import LocalStatisticsGenExecutor


class LocalStatisticsGen(statistics_gen_component.StatisticsGen):
    """TFX's StatisticsGen with ``LocalStatisticsGenExecutor`` (no packaging on the DirectRunner)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(LocalStatisticsGenExecutor)
