"""The one error type of the serving room, with its gRPC status and HTTP status.

Every request problem becomes a ``ServingError(code, message)`` whose ``code`` is the
name of a gRPC status code (``"INVALID_ARGUMENT"``, ``"NOT_FOUND"``...), so the gRPC
front end, the REST front end and the client all report the same thing.
"""

INVALID_ARGUMENT = "INVALID_ARGUMENT"
NOT_FOUND = "NOT_FOUND"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
UNAVAILABLE = "UNAVAILABLE"
UNIMPLEMENTED = "UNIMPLEMENTED"
INTERNAL = "INTERNAL"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
UNKNOWN = "UNKNOWN"

# Canonical code numbers (the same in gRPC and in tensorflow.error.Code).
CODE_NUMBERS = {
    "OK": 0,
    UNKNOWN: 2,
    INVALID_ARGUMENT: 3,
    DEADLINE_EXCEEDED: 4,
    NOT_FOUND: 5,
    RESOURCE_EXHAUSTED: 8,
    FAILED_PRECONDITION: 9,
    UNIMPLEMENTED: 12,
    INTERNAL: 13,
    UNAVAILABLE: 14,
}
CODE_NAMES = {number: name for name, number in CODE_NUMBERS.items()}

# As TF Serving's REST API maps them.
HTTP_STATUS = {
    INVALID_ARGUMENT: 400,
    FAILED_PRECONDITION: 400,
    NOT_FOUND: 404,
    RESOURCE_EXHAUSTED: 429,
    DEADLINE_EXCEEDED: 504,
    UNIMPLEMENTED: 501,
    UNAVAILABLE: 503,
    INTERNAL: 500,
    UNKNOWN: 500,
}
# The reverse, for clients reading a REST error.
CODE_OF_HTTP_STATUS = {
    400: INVALID_ARGUMENT,
    404: NOT_FOUND,
    413: INVALID_ARGUMENT,
    429: RESOURCE_EXHAUSTED,
    501: UNIMPLEMENTED,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}


class ServingError(Exception):
    """A request failed; ``code`` names its gRPC status, ``message`` says why."""

    def __init__(self, code: str, message: str):
        if code not in CODE_NUMBERS:
            raise ValueError(f"unknown status code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status the REST API answers with."""
        return HTTP_STATUS.get(self.code, 500)

    @property
    def code_number(self) -> int:
        """The canonical number of the code (tensorflow.error.Code / grpc)."""
        return CODE_NUMBERS[self.code]

    @property
    def grpc_code(self):
        """The ``grpc.StatusCode`` of this error."""
        import grpc

        return grpc.StatusCode[self.code]


def invalid_argument(message: str) -> ServingError:
    """A request that can never succeed as sent."""
    return ServingError(INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    """A request for a model, version, label or signature that is not served."""
    return ServingError(NOT_FOUND, message)
