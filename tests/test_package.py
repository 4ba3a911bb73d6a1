"""The package's public surface: what ``import shardline`` offers, and ``python -m shardline``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import shardline

PUBLIC = [
    "ChildShard",
    "Clock",
    "Consumer",
    "ConsumerRef",
    "Engine",
    "GetRecordsResult",
    "HashKeyRange",
    "Limits",
    "ListShardsResult",
    "ListStreamsResult",
    "ManualClock",
    "NO_RECORDS_PROCESSED",
    "PutRecordResult",
    "PutRecordsEntry",
    "PutRecordsRequestEntry",
    "PutRecordsResult",
    "Record",
    "SequenceNumberRange",
    "Settings",
    "Shard",
    "ShardFilterType",
    "ShardIteratorType",
    "StreamDescription",
    "StreamDescriptionSummary",
    "StreamMode",
    "StreamStatus",
    "StreamSummary",
    "SystemClock",
    "Tag",
    "__version__",
    "errors",
]


def test_the_public_names_are_pinned() -> None:
    """Adding or removing a public name is a decision: change this list with it. Every value the engine takes or
    returns is among them (``models.__all__``), so code that annotates with them imports from the root."""
    assert sorted(shardline.__all__) == PUBLIC
    assert set(shardline.models.__all__) <= set(PUBLIC)
    for name in PUBLIC:
        assert getattr(shardline, name) is not None, name


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_python_dash_m_is_the_shardline_command() -> None:
    script = shutil.which("shardline", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the shardline script is not installed beside this interpreter")
    for args in (["--help"], ["serve", "--help"], ["no-such-command"]):
        module = _run(sys.executable, "-m", "shardline", *args)
        command = _run(script, *args)
        assert (module.returncode, module.stdout, module.stderr) == (command.returncode, command.stdout, command.stderr)
