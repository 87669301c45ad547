"""JSON-RPC errors with the codes geth gives (ethereum/execution-apis)."""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # geth's default: missing state, unknown block, failed execution
EXECUTION_REVERTED = 3
LIMIT_EXCEEDED = -32005
TIMEOUT = -32002


class RpcError(Exception):
    """An error answered to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_json(self) -> dict[str, Any]:
        """The JSON-RPC `error` member."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidParams(RpcError):
    """A parameter is missing, malformed or out of range; the message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, message)


class ServerError(RpcError):
    """geth's generic -32000: unknown block, missing state, execution failure."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(SERVER_ERROR, message, data)


class MethodNotFound(RpcError):
    """No such method (or namespace) on this node."""

    def __init__(self, method: str) -> None:
        super().__init__(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")


class ExecutionReverted(RpcError):
    """A call reverted: code 3, the revert data as `data`, the decoded reason in the message."""

    def __init__(self, reason: str | None, revert_data: bytes) -> None:
        message = "execution reverted" if not reason else f"execution reverted: {reason}"
        super().__init__(EXECUTION_REVERTED, message, "0x" + revert_data.hex())
        self.revert_data = revert_data
