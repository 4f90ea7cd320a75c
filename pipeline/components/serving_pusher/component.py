"""``ServingPusher``: TFX's Pusher component with ``ServingPusherExecutor``."""

from tfx.components.pusher import component as pusher_component
from tfx.dsl.components.base import executor_spec

from peterrec.pipeline.components.serving_pusher.executor import ServingPusherExecutor


class ServingPusher(pusher_component.Pusher):
    """TFX's Pusher with ``ServingPusherExecutor`` (integer versions, atomic publish, models.config)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ServingPusherExecutor)
