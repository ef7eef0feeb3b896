from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TagRequest(_message.Message):
    __slots__ = ("pid", "spawned", "name", "labels", "cgroup", "join", "join_hosts", "links", "public")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PID_FIELD_NUMBER: _ClassVar[int]
    SPAWNED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    JOIN_HOSTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    pid: int
    spawned: bool
    name: str
    labels: _containers.ScalarMap[str, str]
    cgroup: str
    join: str
    join_hosts: int
    links: _containers.RepeatedScalarFieldContainer[str]
    public: bool
    def __init__(self, pid: _Optional[int] = ..., spawned: _Optional[bool] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., cgroup: _Optional[str] = ..., join: _Optional[str] = ..., join_hosts: _Optional[int] = ..., links: _Optional[_Iterable[str]] = ..., public: _Optional[bool] = ...) -> None: ...

class TagReply(_message.Message):
    __slots__ = ("run_id", "warning", "shared_run_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    SHARED_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    warning: str
    shared_run_id: str
    def __init__(self, run_id: _Optional[str] = ..., warning: _Optional[str] = ..., shared_run_id: _Optional[str] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("run", "depth", "max_nodes")
    RUN_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    run: str
    depth: int
    max_nodes: int
    def __init__(self, run: _Optional[str] = ..., depth: _Optional[int] = ..., max_nodes: _Optional[int] = ...) -> None: ...

class FinishRequest(_message.Message):
    __slots__ = ("run_id", "has_exit_code", "exit_code", "timeout")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    has_exit_code: bool
    exit_code: int
    timeout: float
    def __init__(self, run_id: _Optional[str] = ..., has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., timeout: _Optional[float] = ...) -> None: ...

class JsonReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class RunsRequest(_message.Message):
    __slots__ = ("name", "limit", "labels", "host", "since", "until", "link", "project")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit: int
    labels: _containers.ScalarMap[str, str]
    host: str
    since: float
    until: float
    link: str
    project: str
    def __init__(self, name: _Optional[str] = ..., limit: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., host: _Optional[str] = ..., since: _Optional[float] = ..., until: _Optional[float] = ..., link: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class LineageRequest(_message.Message):
    __slots__ = ("query", "host", "up", "down", "depth", "max_nodes")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    query: str
    host: str
    up: bool
    down: bool
    depth: int
    max_nodes: int
    def __init__(self, query: _Optional[str] = ..., host: _Optional[str] = ..., up: _Optional[bool] = ..., down: _Optional[bool] = ..., depth: _Optional[int] = ..., max_nodes: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("run", "format")
    RUN_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    run: str
    format: str
    def __init__(self, run: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
