from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunTaskRequest(_message.Message):
    __slots__ = ("run_id", "attempt", "epoch", "job_id", "command", "args", "use_shell", "env", "timeout_seconds", "output_limit_bytes", "cwd", "scheduled_for", "kind", "http")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    USE_SHELL_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_FOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    attempt: int
    epoch: int
    job_id: int
    command: str
    args: _containers.RepeatedScalarFieldContainer[str]
    use_shell: bool
    env: _containers.ScalarMap[str, str]
    timeout_seconds: float
    output_limit_bytes: int
    cwd: str
    scheduled_for: float
    kind: str
    http: HttpRequestSpec
    def __init__(self, run_id: _Optional[int] = ..., attempt: _Optional[int] = ..., epoch: _Optional[int] = ..., job_id: _Optional[int] = ..., command: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., use_shell: _Optional[bool] = ..., env: _Optional[_Mapping[str, str]] = ..., timeout_seconds: _Optional[float] = ..., output_limit_bytes: _Optional[int] = ..., cwd: _Optional[str] = ..., scheduled_for: _Optional[float] = ..., kind: _Optional[str] = ..., http: _Optional[_Union[HttpRequestSpec, _Mapping]] = ...) -> None: ...

class HttpRequestSpec(_message.Message):
    __slots__ = ("method", "url", "headers", "body", "expected_status")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STATUS_FIELD_NUMBER: _ClassVar[int]
    method: str
    url: str
    headers: _containers.ScalarMap[str, str]
    body: str
    expected_status: int
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[str] = ..., expected_status: _Optional[int] = ...) -> None: ...

class RunTaskReply(_message.Message):
    __slots__ = ("accepted", "reason", "started_at", "highest_epoch")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    started_at: float
    highest_epoch: int
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., started_at: _Optional[float] = ..., highest_epoch: _Optional[int] = ...) -> None: ...

class RunTasksRequest(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[RunTaskRequest]
    def __init__(self, tasks: _Optional[_Iterable[_Union[RunTaskRequest, _Mapping]]] = ...) -> None: ...

class RunTasksReply(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[RunTaskReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[RunTaskReply, _Mapping]]] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("run_id", "attempt", "epoch")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    attempt: int
    epoch: int
    def __init__(self, run_id: _Optional[int] = ..., attempt: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class CancelTaskReply(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class RunningTask(_message.Message):
    __slots__ = ("run_id", "attempt")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    run_id: int
    attempt: int
    def __init__(self, run_id: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "address", "labels", "capacity", "running", "version", "draining", "restricted", "allowed_commands")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    RESTRICTED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    labels: _containers.ScalarMap[str, str]
    capacity: int
    running: _containers.RepeatedCompositeFieldContainer[RunningTask]
    version: str
    draining: bool
    restricted: bool
    allowed_commands: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[int] = ..., running: _Optional[_Iterable[_Union[RunningTask, _Mapping]]] = ..., version: _Optional[str] = ..., draining: _Optional[bool] = ..., restricted: _Optional[bool] = ..., allowed_commands: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("ok", "epoch")
    OK_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    epoch: int
    def __init__(self, ok: _Optional[bool] = ..., epoch: _Optional[int] = ...) -> None: ...

class ReportResultRequest(_message.Message):
    __slots__ = ("worker_id", "run_id", "attempt", "state", "has_exit_code", "exit_code", "output", "output_truncated", "error", "started_at", "finished_at")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    run_id: int
    attempt: int
    state: str
    has_exit_code: bool
    exit_code: int
    output: str
    output_truncated: bool
    error: str
    started_at: float
    finished_at: float
    def __init__(self, worker_id: _Optional[str] = ..., run_id: _Optional[int] = ..., attempt: _Optional[int] = ..., state: _Optional[str] = ..., has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., output: _Optional[str] = ..., output_truncated: _Optional[bool] = ..., error: _Optional[str] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ...) -> None: ...

class ReportResultReply(_message.Message):
    __slots__ = ("acknowledged", "detail")
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    acknowledged: bool
    detail: str
    def __init__(self, acknowledged: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class ReportResultsRequest(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReportResultRequest]
    def __init__(self, results: _Optional[_Iterable[_Union[ReportResultRequest, _Mapping]]] = ...) -> None: ...

class ReportResultsReply(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[ReportResultReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[ReportResultReply, _Mapping]]] = ...) -> None: ...
