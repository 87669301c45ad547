"""Which commit survived a crash: the newest slot whose appended records are all on disk.

A commit's slot is made durable side by side with its logs (store.py), so after a power cut the
newest slot may name records that never reached the disk. Every commit says, per topic it
appended to, where its bytes begin and their CRC32C (`TopicState.appended_*`); the commit
survived when those bytes read back whole with that CRC (and the files it names exist).
Otherwise the other slot holds the previous commit, whose flushes all ended before this one
began. Only the newest commit needs the check: each commit waits for its flushes before the
next one starts.
"""

from __future__ import annotations

from pathlib import Path

from khipu.storage.kesque import files
from khipu.storage.kesque.commit_file import CommitState, TopicState, commit_candidates
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.hash_index import index_file_name
from khipu.storage.kesque.segment import list_segment_bases, segment_file_name

READ_CHUNK = 1 << 22


def durable_commit(
    store_path: Path, data: bytes, commit_path: Path, config: KesqueConfig
) -> tuple[CommitState, bool]:
    """The newest commit in the commit file's bytes `data` whose appended records are whole;
    and whether a newer slot was passed over for it (the caller then rewrites the file).

    Raises StoreCorrupted when no slot is valid, or when none survives the check (only a
    damaged disk does that: run `khipu db repair`).
    """
    candidates = commit_candidates(data, commit_path)
    problems = []
    for state in candidates:
        problem = appended_problem(store_path, state, config)
        if problem is None:
            return state, state is not candidates[0]
        problems.append(f"commit {state.sequence}: {problem}")
    raise StoreCorrupted(commit_path, 0, "; ".join(problems) + ": run `khipu db repair`")


def appended_problem(store_path: Path, state: CommitState, config: KesqueConfig) -> str | None:
    """What is missing of the records commit `state` appended (None: they are all whole)."""
    for name in (*config.hash_topics, *config.number_topics):
        topic = state.topic(name)
        if topic.appended_in != state.sequence:
            continue
        problem = _topic_problem(store_path / name, topic, name in config.number_topics)
        if problem is not None:
            return f"topic {name}: {problem}"
    return None


def _topic_problem(directory: Path, topic: TopicState, numbered: bool) -> str | None:
    """What is missing of the bytes one topic appended in its commit; raises StoreCorrupted
    when a file is missing that no crash during that commit can have lost."""
    bases = list_segment_bases(directory) if directory.is_dir() else []
    index_path = directory / index_file_name(topic.index_generation)
    if not numbered and topic.index_generation and not index_path.exists():
        # made durable before any commit named it (hash_topic.py): no crash loses it
        raise StoreCorrupted(index_path, 0, "hash index missing: run `khipu db repair`")
    crc = 0
    for ordinal in range(topic.appended_segment, topic.segments):
        # a segment older than the commit was durable before it; a new one may be lost whole
        new = ordinal > topic.appended_segment or topic.appended_position == 0
        if ordinal >= len(bases):
            if new:
                return f"segment {ordinal} is missing"
            problem = f"segment {ordinal} is missing: run `khipu db repair`"
            raise StoreCorrupted(directory, 0, problem)
        path = directory / segment_file_name(bases[ordinal])
        start = topic.appended_position if ordinal == topic.appended_segment else 0
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            end = topic.end if ordinal == topic.segments - 1 else size
            if size < end:
                return f"{path.name} has {size} bytes, the commit names {end}"
            for position in range(start, end, READ_CHUNK):
                chunk = files.read_at(log.fileno(), min(READ_CHUNK, end - position), position)
                crc = crc32c(chunk, crc)
    if crc != topic.appended_crc:
        return f"its appended bytes have CRC32C {crc:#010x}, not {topic.appended_crc:#010x}"
    return None
