"""Where every effective value came from, and the file's key paths behind shardline.yml's.

A dialect's loader writes its file in shardline.yml's form (``Translation.native``) and records, for each value it
writes, the key path in the file it read it from (errors name that path) and its origin: the file itself, the
dialect's default, ``provider`` / ``Globals``, or a command-line override. ``describe`` prints the resolved project
with those origins (``shardline validate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import ConfigFile
from ..runtime.config import ConsumerSpec, ProjectConfig
from ..runtime.destinations import local_stream_for

__all__ = ["MappedFile", "Translation", "describe"]


@dataclass(frozen=True)
class MappedFile(ConfigFile):
    """A ConfigFile whose failures name the file's own key path for a shardline.yml one (the longest known prefix)."""

    paths: Mapping[str, str] = field(default_factory=dict)

    def source_path(self, where: str) -> str:
        best = ""
        for native in self.paths:
            if (where == native or where.startswith((native + ".", native + "["))) and len(native) > len(best):
                best = native
        if not best:
            return where
        return self.paths[best] + where[len(best) :]

    def fail(self, where: str, message: str) -> Any:
        return ConfigFile.fail(self, self.source_path(where), message)


@dataclass
class Translation:
    """A project file in shardline.yml's form, with the file's key path and the origin of each value."""

    dialect: str
    native: dict[str, Any] = field(default_factory=lambda: {"streams": {}, "functions": {}})
    paths: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    consumers: list[ConsumerSpec] = field(default_factory=list)
    # values a local run shows but does not apply: function name -> {key: (value, origin)}
    extras: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)
    # how the file was resolved: parameter or variable -> (value, origin)
    inputs: dict[str, tuple[Any, str]] = field(default_factory=dict)
    # the file's key path -> the parameters or variables its value was read through
    via: dict[str, list[str]] = field(default_factory=dict)

    def link_parameters(self, refs: Mapping[str, str]) -> None:
        for path, name in refs.items():
            self.via.setdefault(path, []).append(f"Parameters.{name}")

    def put(self, target: dict[str, Any], native: str, key: str, value: Any, *, source: str, origin: str) -> None:
        """Set ``target[key] = value``; ``native`` is the shardline.yml path of ``target``."""
        target[key] = value
        path = f"{native}.{key}"
        self.paths[path] = source
        self.origins[path] = origin

    def note(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)


_FUNCTION_FIELDS = [
    ("timeout", "timeout_s", "s"),
    ("memorySize", "memory_mb", "MB"),
    ("environment", "environment", ""),
    ("reservedConcurrency", "reserved_concurrency", ""),
]
# shardline.yml event key -> (MappingConfig field, API name)
_MAPPING_FIELDS = [
    ("startingPosition", "starting_position", "StartingPosition"),
    ("startingPositionTimestamp", "starting_position_timestamp_ms", "StartingPositionTimestamp"),
    ("batchSize", "batch_size", "BatchSize"),
    ("batchWindow", "maximum_batching_window_s", "MaximumBatchingWindowInSeconds"),
    ("parallelizationFactor", "parallelization_factor", "ParallelizationFactor"),
    ("maximumRetryAttempts", "maximum_retry_attempts", "MaximumRetryAttempts"),
    ("maximumRecordAgeInSeconds", "maximum_record_age_s", "MaximumRecordAgeInSeconds"),
    ("bisectBatchOnFunctionError", "bisect_batch_on_function_error", "BisectBatchOnFunctionError"),
    ("functionResponseType", "function_response_types", "FunctionResponseTypes"),
    ("tumblingWindowInSeconds", "tumbling_window_s", "TumblingWindowInSeconds"),
    ("filterPatterns", "filter_patterns", "FilterCriteria"),
    ("destinations", "on_failure", "DestinationConfig.OnFailure"),
    ("enabled", "enabled", "Enabled"),
]


def _origin(t: Translation, native: str, default: str) -> str:
    origin = t.origins.get(native)
    if origin is None:
        return default
    source = t.paths.get(native)
    text = f"{origin}: {source}" if origin == "file" and source else origin
    through = _through(t, source or native if origin == "file" else origin)
    return f"{text}, via {', '.join(through)}" if through else text


def _through(t: Translation, source: str) -> list[str]:
    """The parameters and variables behind the value at ``source``, each with its value's origin."""
    out: list[str] = []
    for path, names in t.via.items():
        if path == source or path.startswith((source + ".", source + "[")):
            for name in names:
                key = name.removeprefix("Parameters.")
                origin = t.inputs.get(key, t.inputs.get(name, (None, "")))[1]
                item = f"{name} ({origin})" if origin else name
                if item not in out:
                    out.append(item)
    return out


def describe(config: ProjectConfig, t: Translation) -> list[str]:
    """The resolved project, one value a line with where it came from."""
    out = [f"{config.path} ({t.dialect})"]
    for name, (value, origin) in t.inputs.items():
        out.append(f"  {name} = {value!r}  [{origin}]")
    out.append("streams:")
    for s in config.streams.values():
        base = f"streams.{s.name}"
        out.append(f"  {s.name}")
        out.append(f"    mode {s.mode}  [{_origin(t, base + '.mode', 'default')}]")
        if s.shards is not None:
            out.append(f"    shards {s.shards}  [{_origin(t, base + '.shards', 'default')}]")
        out.append(f"    retention {s.retention_hours} h  [{_origin(t, base + '.retentionHours', 'default')}]")
    for c in config.consumers:
        out.append(f"  consumer {c.name} on {c.stream}")
    out.append("functions:")
    for fname, fn in config.functions.items():
        base = f"functions.{fname}"
        cfg = fn.config
        out.append(f"  {fname}")
        out.append(f"    handler {cfg.handler} (in {cfg.code_dir})  [{_origin(t, base + '.handler', 'file')}]")
        for key, attr, unit in _FUNCTION_FIELDS:
            value = getattr(cfg, attr)
            if key == "reservedConcurrency" and value is None:
                continue
            shown = f"{value:g}" if isinstance(value, float) else value
            out.append(f"    {key} {shown}{' ' + unit if unit else ''}  [{_origin(t, f'{base}.{key}', 'default')}]")
        for key, (value, origin) in t.extras.get(fname, {}).items():
            out.append(f"    {key} {value}  [{origin}]")
        for i, m in enumerate(fn.mappings):
            ev = f"{base}.events[{i}].stream"
            out.append(f"    mapping {m.uuid}: {m.stream_name} -> {fname}  [{t.paths.get(ev, ev)}]")
            for key, attr, api in _MAPPING_FIELDS:
                value = getattr(m, attr)
                if api == "DestinationConfig.OnFailure" and value is not None:
                    value = _destination(value.kind, value.target)
                elif isinstance(value, tuple):
                    value = list(value)
                # the API has no default StartingPosition: only shardline.yml gives one (TRIM_HORIZON)
                default = f"{t.dialect} default" if api == "StartingPosition" else "AWS default"
                out.append(f"      {api} {value}  [{_origin(t, f'{ev}.{key}', default)}]")
    if config.notices:
        out.append("not applied locally:")
        out += [f"  - {n}" for n in config.notices]
    return out


def _destination(kind: str, target: str) -> str:
    if kind in ("sqs", "sns"):
        return f"{target} (embedded: local stream {local_stream_for(target)}; shardline run: the real {kind.upper()})"
    return f"{kind} {target}"
