"""``LocalStatisticsGenExecutor``: TFX's StatisticsGen executor, local-aware."""

from tfx.components.statistics_gen import executor as statistics_gen_executor

from peterrec.components import executor as executor_lib


class LocalStatisticsGenExecutor(executor_lib.LocalAwareBeamExecutor, statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor without the dependency packaging on the local DirectRunner
    (the ingestion executors' ``LocalAwareBeamExecutor`` in front of TFX's executor)."""
