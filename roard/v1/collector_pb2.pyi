from roard.v1 import records_pb2 as _records_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("protocol", "host_id", "boot_id", "version", "tier", "resume_seq")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    RESUME_SEQ_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    host_id: str
    boot_id: str
    version: str
    tier: str
    resume_seq: int
    def __init__(self, protocol: _Optional[int] = ..., host_id: _Optional[str] = ..., boot_id: _Optional[str] = ..., version: _Optional[str] = ..., tier: _Optional[str] = ..., resume_seq: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_records_pb2.Record]
    def __init__(self, records: _Optional[_Iterable[_Union[_records_pb2.Record, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: float
    def __init__(self, time: _Optional[float] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("hello", "batch", "heartbeat")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    heartbeat: Heartbeat
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("protocol", "collector_id", "acked_seq", "max_batch")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    collector_id: str
    acked_seq: int
    max_batch: int
    def __init__(self, protocol: _Optional[int] = ..., collector_id: _Optional[str] = ..., acked_seq: _Optional[int] = ..., max_batch: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq", "stored", "duplicates")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    stored: int
    duplicates: int
    def __init__(self, seq: _Optional[int] = ..., stored: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class StreamReply(_message.Message):
    __slots__ = ("welcome", "ack", "heartbeat")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    ack: Ack
    heartbeat: Heartbeat
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class RunQuery(_message.Message):
    __slots__ = ("run", "uid", "depth", "max_nodes")
    RUN_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    run: str
    uid: int
    depth: int
    max_nodes: int
    def __init__(self, run: _Optional[str] = ..., uid: _Optional[int] = ..., depth: _Optional[int] = ..., max_nodes: _Optional[int] = ...) -> None: ...

class RunsQuery(_message.Message):
    __slots__ = ("name", "labels", "host", "since", "until", "limit", "uid", "link", "project")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    host: str
    since: float
    until: float
    limit: int
    uid: int
    link: str
    project: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., host: _Optional[str] = ..., since: _Optional[float] = ..., until: _Optional[float] = ..., limit: _Optional[int] = ..., uid: _Optional[int] = ..., link: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class ArtifactQuery(_message.Message):
    __slots__ = ("query", "host", "uid")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    query: str
    host: str
    uid: int
    def __init__(self, query: _Optional[str] = ..., host: _Optional[str] = ..., uid: _Optional[int] = ...) -> None: ...

class LineageQuery(_message.Message):
    __slots__ = ("query", "host", "up", "down", "depth", "uid", "max_nodes")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    query: str
    host: str
    up: bool
    down: bool
    depth: int
    uid: int
    max_nodes: int
    def __init__(self, query: _Optional[str] = ..., host: _Optional[str] = ..., up: _Optional[bool] = ..., down: _Optional[bool] = ..., depth: _Optional[int] = ..., uid: _Optional[int] = ..., max_nodes: _Optional[int] = ...) -> None: ...

class ExportQuery(_message.Message):
    __slots__ = ("run", "format", "uid")
    RUN_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    run: str
    format: str
    uid: int
    def __init__(self, run: _Optional[str] = ..., format: _Optional[str] = ..., uid: _Optional[int] = ...) -> None: ...

class JsonDoc(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...
