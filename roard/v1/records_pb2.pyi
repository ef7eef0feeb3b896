from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_INPUT: _ClassVar[Role]
    ROLE_OUTPUT: _ClassVar[Role]
    ROLE_DELETED: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_INPUT: Role
ROLE_OUTPUT: Role
ROLE_DELETED: Role

class Record(_message.Message):
    __slots__ = ("id", "seq", "run_id", "time", "part", "run_tagged", "process_started", "process_exited", "file_access", "loss_notice", "run_finished", "path_changed", "environment", "run_context", "dataset", "tracker_link")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    RUN_TAGGED_FIELD_NUMBER: _ClassVar[int]
    PROCESS_STARTED_FIELD_NUMBER: _ClassVar[int]
    PROCESS_EXITED_FIELD_NUMBER: _ClassVar[int]
    FILE_ACCESS_FIELD_NUMBER: _ClassVar[int]
    LOSS_NOTICE_FIELD_NUMBER: _ClassVar[int]
    RUN_FINISHED_FIELD_NUMBER: _ClassVar[int]
    PATH_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    RUN_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TRACKER_LINK_FIELD_NUMBER: _ClassVar[int]
    id: str
    seq: int
    run_id: str
    time: float
    part: str
    run_tagged: RunTagged
    process_started: ProcessStarted
    process_exited: ProcessExited
    file_access: FileAccess
    loss_notice: LossNotice
    run_finished: RunFinished
    path_changed: PathChanged
    environment: Environment
    run_context: RunContext
    dataset: Dataset
    tracker_link: TrackerLink
    def __init__(self, id: _Optional[str] = ..., seq: _Optional[int] = ..., run_id: _Optional[str] = ..., time: _Optional[float] = ..., part: _Optional[str] = ..., run_tagged: _Optional[_Union[RunTagged, _Mapping]] = ..., process_started: _Optional[_Union[ProcessStarted, _Mapping]] = ..., process_exited: _Optional[_Union[ProcessExited, _Mapping]] = ..., file_access: _Optional[_Union[FileAccess, _Mapping]] = ..., loss_notice: _Optional[_Union[LossNotice, _Mapping]] = ..., run_finished: _Optional[_Union[RunFinished, _Mapping]] = ..., path_changed: _Optional[_Union[PathChanged, _Mapping]] = ..., environment: _Optional[_Union[Environment, _Mapping]] = ..., run_context: _Optional[_Union[RunContext, _Mapping]] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ..., tracker_link: _Optional[_Union[TrackerLink, _Mapping]] = ...) -> None: ...

class RunTagged(_message.Message):
    __slots__ = ("name", "labels", "host", "uid", "how", "root_pid", "started_at", "cgroup", "joined", "join_hosts", "placement", "public")
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
    UID_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    ROOT_PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    JOIN_HOSTS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    host: str
    uid: int
    how: str
    root_pid: int
    started_at: float
    cgroup: str
    joined: bool
    join_hosts: int
    placement: Placement
    public: bool
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., host: _Optional[str] = ..., uid: _Optional[int] = ..., how: _Optional[str] = ..., root_pid: _Optional[int] = ..., started_at: _Optional[float] = ..., cgroup: _Optional[str] = ..., joined: _Optional[bool] = ..., join_hosts: _Optional[int] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., public: _Optional[bool] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("cgroup", "container", "kubernetes_pod", "kubernetes_pod_uid")
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_POD_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_POD_UID_FIELD_NUMBER: _ClassVar[int]
    cgroup: str
    container: str
    kubernetes_pod: str
    kubernetes_pod_uid: str
    def __init__(self, cgroup: _Optional[str] = ..., container: _Optional[str] = ..., kubernetes_pod: _Optional[str] = ..., kubernetes_pod_uid: _Optional[str] = ...) -> None: ...

class ProcessStarted(_message.Message):
    __slots__ = ("pid", "ppid", "start_ticks", "exe", "argv", "cwd", "uid", "started_at", "env_hash")
    PID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    START_TICKS_FIELD_NUMBER: _ClassVar[int]
    EXE_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENV_HASH_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ppid: int
    start_ticks: int
    exe: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    uid: int
    started_at: float
    env_hash: str
    def __init__(self, pid: _Optional[int] = ..., ppid: _Optional[int] = ..., start_ticks: _Optional[int] = ..., exe: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., uid: _Optional[int] = ..., started_at: _Optional[float] = ..., env_hash: _Optional[str] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("hash", "vars", "truncated")
    class VarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HASH_FIELD_NUMBER: _ClassVar[int]
    VARS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    hash: str
    vars: _containers.ScalarMap[str, str]
    truncated: bool
    def __init__(self, hash: _Optional[str] = ..., vars: _Optional[_Mapping[str, str]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ProcessExited(_message.Message):
    __slots__ = ("pid", "start_ticks", "exit_code", "ended_at", "signal")
    PID_FIELD_NUMBER: _ClassVar[int]
    START_TICKS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    pid: int
    start_ticks: int
    exit_code: int
    ended_at: float
    signal: int
    def __init__(self, pid: _Optional[int] = ..., start_ticks: _Optional[int] = ..., exit_code: _Optional[int] = ..., ended_at: _Optional[float] = ..., signal: _Optional[int] = ...) -> None: ...

class FileAccess(_message.Message):
    __slots__ = ("path", "role", "hash", "size", "kind", "dev", "ino", "mtime_ns", "bytes_read", "bytes_written", "read_too", "unhashed", "location", "seen_path")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    READ_TOO_FIELD_NUMBER: _ClassVar[int]
    UNHASHED_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SEEN_PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    role: Role
    hash: str
    size: int
    kind: str
    dev: int
    ino: int
    mtime_ns: int
    bytes_read: int
    bytes_written: int
    read_too: bool
    unhashed: str
    location: str
    seen_path: str
    def __init__(self, path: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., hash: _Optional[str] = ..., size: _Optional[int] = ..., kind: _Optional[str] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., bytes_read: _Optional[int] = ..., bytes_written: _Optional[int] = ..., read_too: _Optional[bool] = ..., unhashed: _Optional[str] = ..., location: _Optional[str] = ..., seen_path: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("path", "role", "hash", "size", "files", "unhashed")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    UNHASHED_FIELD_NUMBER: _ClassVar[int]
    path: str
    role: Role
    hash: str
    size: int
    files: _containers.RepeatedCompositeFieldContainer[DatasetFile]
    unhashed: str
    def __init__(self, path: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., hash: _Optional[str] = ..., size: _Optional[int] = ..., files: _Optional[_Iterable[_Union[DatasetFile, _Mapping]]] = ..., unhashed: _Optional[str] = ...) -> None: ...

class DatasetFile(_message.Message):
    __slots__ = ("path", "hash", "size")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    path: str
    hash: str
    size: int
    def __init__(self, path: _Optional[str] = ..., hash: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class LossNotice(_message.Message):
    __slots__ = ("lost_events", "reason", "delivery")
    LOST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    lost_events: int
    reason: str
    delivery: bool
    def __init__(self, lost_events: _Optional[int] = ..., reason: _Optional[str] = ..., delivery: _Optional[bool] = ...) -> None: ...

class PathChanged(_message.Message):
    __slots__ = ("op", "path", "new_path", "pid")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_UNSPECIFIED: _ClassVar[PathChanged.Op]
        OP_RENAME: _ClassVar[PathChanged.Op]
        OP_EXCHANGE: _ClassVar[PathChanged.Op]
        OP_LINK: _ClassVar[PathChanged.Op]
        OP_UNLINK: _ClassVar[PathChanged.Op]
    OP_UNSPECIFIED: PathChanged.Op
    OP_RENAME: PathChanged.Op
    OP_EXCHANGE: PathChanged.Op
    OP_LINK: PathChanged.Op
    OP_UNLINK: PathChanged.Op
    OP_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NEW_PATH_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    op: PathChanged.Op
    path: str
    new_path: str
    pid: int
    def __init__(self, op: _Optional[_Union[PathChanged.Op, str]] = ..., path: _Optional[str] = ..., new_path: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class TrackerLink(_message.Message):
    __slots__ = ("tracker", "run_id", "project", "url", "source")
    TRACKER_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    tracker: str
    run_id: str
    project: str
    url: str
    source: str
    def __init__(self, tracker: _Optional[str] = ..., run_id: _Optional[str] = ..., project: _Optional[str] = ..., url: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class RunFinished(_message.Message):
    __slots__ = ("has_exit_code", "exit_code", "ended_at", "complete", "lost_events", "signal")
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    LOST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    has_exit_code: bool
    exit_code: int
    ended_at: float
    complete: bool
    lost_events: int
    signal: int
    def __init__(self, has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., ended_at: _Optional[float] = ..., complete: _Optional[bool] = ..., lost_events: _Optional[int] = ..., signal: _Optional[int] = ...) -> None: ...

class RunContext(_message.Message):
    __slots__ = ("git", "python", "system", "host")
    GIT_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    git: _containers.RepeatedCompositeFieldContainer[GitTree]
    python: _containers.RepeatedCompositeFieldContainer[PythonDistribution]
    system: _containers.RepeatedCompositeFieldContainer[SystemPackage]
    host: HostFacts
    def __init__(self, git: _Optional[_Iterable[_Union[GitTree, _Mapping]]] = ..., python: _Optional[_Iterable[_Union[PythonDistribution, _Mapping]]] = ..., system: _Optional[_Iterable[_Union[SystemPackage, _Mapping]]] = ..., host: _Optional[_Union[HostFacts, _Mapping]] = ...) -> None: ...

class GitTree(_message.Message):
    __slots__ = ("root", "remote", "branch", "commit", "dirty", "diff_hash", "modified", "modified_truncated", "files_read")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    DIRTY_FIELD_NUMBER: _ClassVar[int]
    DIFF_HASH_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    FILES_READ_FIELD_NUMBER: _ClassVar[int]
    root: str
    remote: str
    branch: str
    commit: str
    dirty: bool
    diff_hash: str
    modified: _containers.RepeatedScalarFieldContainer[str]
    modified_truncated: bool
    files_read: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, root: _Optional[str] = ..., remote: _Optional[str] = ..., branch: _Optional[str] = ..., commit: _Optional[str] = ..., dirty: _Optional[bool] = ..., diff_hash: _Optional[str] = ..., modified: _Optional[_Iterable[str]] = ..., modified_truncated: _Optional[bool] = ..., files_read: _Optional[_Iterable[str]] = ...) -> None: ...

class PythonDistribution(_message.Message):
    __slots__ = ("name", "version", "location")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    location: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...

class SystemPackage(_message.Message):
    __slots__ = ("manager", "name", "version", "arch")
    MANAGER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    manager: str
    name: str
    version: str
    arch: str
    def __init__(self, manager: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., arch: _Optional[str] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("index", "name", "uuid", "memory_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    uuid: str
    memory_bytes: int
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., uuid: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class HostFacts(_message.Message):
    __slots__ = ("os", "kernel", "arch", "cpu_model", "cpus", "memory_bytes", "gpus", "driver_version", "cuda_version", "container", "kubernetes_pod", "kubernetes_pod_uid")
    OS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_POD_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_POD_UID_FIELD_NUMBER: _ClassVar[int]
    os: str
    kernel: str
    arch: str
    cpu_model: str
    cpus: int
    memory_bytes: int
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    driver_version: str
    cuda_version: str
    container: str
    kubernetes_pod: str
    kubernetes_pod_uid: str
    def __init__(self, os: _Optional[str] = ..., kernel: _Optional[str] = ..., arch: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ..., container: _Optional[str] = ..., kubernetes_pod: _Optional[str] = ..., kubernetes_pod_uid: _Optional[str] = ...) -> None: ...
