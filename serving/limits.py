"""The largest request the server accepts: kept apart from ``prediction`` so that
``peterrec serve`` can size its gRPC port before TensorFlow is imported."""

import dataclasses


@dataclasses.dataclass
class RequestLimits:
    """The largest request the server accepts (bigger ones get INVALID_ARGUMENT)."""

    max_rows: int = 1024
    max_elements: int = 1 << 20  # per input tensor
    max_body_bytes: int = 32 << 20  # REST request body; gRPC messages are capped at the same size
