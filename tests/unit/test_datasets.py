"""Dataset grouping and tree hashes (roard.artifacts.datasets)."""

from __future__ import annotations

import blake3

from roard.artifacts.datasets import Dataset, Member, group, tree_hash


def _files(*paths: str) -> list[Member]:
    return [Member(p, "blake3:" + blake3.blake3(p.encode()).hexdigest(), 10) for p in paths]


def _shards(directory: str, n: int, name: str = "part-{:03}.bin") -> list[str]:
    return [f"{directory}/{name.format(i)}" for i in range(n)]


def _paths(found: list[Dataset]) -> list[tuple[str, int]]:
    return [(d.path, len(d.files)) for d in found]


def test_exactly_min_files_is_a_dataset_one_fewer_is_not() -> None:
    assert _paths(group(_files(*_shards("/d/shards", 8)), 8)) == [("/d/shards", 8)]
    assert group(_files(*_shards("/d/shards", 7)), 8) == []


def test_scattered_files_plus_one_shard_directory_yield_the_shard_directory() -> None:
    repo = "/home/u/proj"
    found = group(
        _files(
            f"{repo}/config.yaml",
            f"{repo}/src/a.txt",
            f"{repo}/src/b.txt",
            "/home/u/notes.txt",
            *_shards(f"{repo}/data/shards", 20),
        ),
        8,
    )
    assert _paths(found) == [(f"{repo}/data/shards", 20)]


def test_a_stop_is_never_spanned() -> None:
    files = _files(*_shards("/w/train", 10), *_shards("/w/val", 10))
    assert _paths(group(files, 8)) == [("/w", 20)]
    assert _paths(group(files, 8, stops=["/w"])) == [("/w/train", 10), ("/w/val", 10)]
    # A flat stop (the job ran in its shard directory) is a dataset all the same.
    assert _paths(group(_files(*_shards("/w/train", 10)), 8, stops=["/w/train"])) == [
        ("/w/train", 10)
    ]


def test_two_sibling_shard_directories_are_one_dataset() -> None:
    found = group(_files(*_shards("/d/data/train", 20), *_shards("/d/data/val", 8)), 8)
    assert _paths(found) == [("/d/data", 28)]
    assert {m.path for m in found[0].files} >= {"train/part-000.bin", "val/part-007.bin"}


def test_a_small_directory_beside_a_big_one_stays_out() -> None:
    found = group(_files(*_shards("/d/data/train", 20), *_shards("/d/data/val", 3)), 8)
    assert _paths(found) == [("/d/data/train", 20)]


def test_one_file_beside_a_single_shard_directory_stays_out() -> None:
    found = group(_files("/ckpt/config.json", *_shards("/ckpt/shards", 10)), 8)
    assert _paths(found) == [("/ckpt/shards", 10)]


def test_side_files_beside_several_subdirectories_belong_to_the_dataset() -> None:
    found = group(
        _files("/ds/dataset_dict.json", *_shards("/ds/train", 10), *_shards("/ds/test", 9)), 8
    )
    assert _paths(found) == [("/ds", 20)]
    assert found[0].files[0].path == "dataset_dict.json"


def test_partitions_make_one_dataset_at_the_table_root() -> None:
    parts = [
        f"/lake/sales/year={y}/month={m:02}/part-0.parquet"
        for y in (2023, 2024)
        for m in (1, 2, 3, 4)
    ]
    assert _paths(group(_files(*parts), 8)) == [("/lake/sales", 8)]
    # One partition only: still rooted at the table, not at year=2024.
    one = [f"/lake/sales/year=2024/month={m:02}/part-0.parquet" for m in range(1, 13)]
    found = group(_files(*one), 8)
    assert _paths(found) == [("/lake/sales", 12)]
    assert found[0].files[0].path == "year=2024/month=01/part-0.parquet"


def test_direct_files_of_a_directory_that_is_not_data_like() -> None:
    found = group(_files(*_shards("/ckpt", 10), "/ckpt/logs/a.log", "/ckpt/logs/b.log"), 8)
    assert _paths(found) == [("/ckpt", 10)]
    assert all("/" not in m.path for m in found[0].files)


def test_tree_hash_recomputed_independently() -> None:
    files = _files("/d/b/x", "/d/a", "/d/b/y", *_shards("/d/c", 5))
    (found,) = group(files, 8)
    lines = sorted(f"{m.path.removeprefix('/d/')}\0{m.hash}\n".encode() for m in files)
    assert found.path == "/d"
    assert found.hash == "blake3:" + blake3.blake3(b"".join(lines)).hexdigest()
    assert found.size == 10 * len(files)
    assert [m.path for m in found.files] == sorted(m.path for m in found.files)


def test_tree_hash_depends_on_names_and_contents_not_order() -> None:
    a = tree_hash([("x", "blake3:1"), ("y", "blake3:2")])
    assert a == tree_hash([("y", "blake3:2"), ("x", "blake3:1")])
    assert a != tree_hash([("x", "blake3:2"), ("y", "blake3:1")])
    # Names that are not UTF-8 hash as the bytes they were.
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")
    expected = blake3.blake3(b"caf\xe9\0blake3:1\n").hexdigest()
    assert tree_hash([(raw, "blake3:1")]) == f"blake3:{expected}"


def test_an_unhashed_component_leaves_the_dataset_without_a_hash() -> None:
    files = _files(*_shards("/d", 9))
    files[3] = Member(files[3].path, "", 99, "over hash_max_bytes")
    (found,) = group(files, 8)
    assert found.hash == ""
    assert found.unhashed == "1 of 9 files unhashed (part-003.bin: over hash_max_bytes)"
    assert len(found.files) == 9 and found.size == 8 * 10 + 99
