"""Domain errors. Each carries its HTTP status; the API maps them in one handler."""


class ServiceError(Exception):
    status_code = 500

    def __init__(self, message: str, *, hint: str | None = None, **details: object) -> None:
        """`message` says what happened; `hint`, when given, what to do about it (the API's `message` joins both)."""
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class UnsupportedMediaType(ServiceError):
    status_code = 415


class ModelInvalid(ServiceError):
    """A model folder or artifact that does not satisfy the model-store contract."""

    status_code = 500
