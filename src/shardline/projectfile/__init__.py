"""Project files as users already write them: shardline.yml, serverless.yml, AWS SAM and CloudFormation templates.

One loader per dialect (native.py, serverless.py, sam.py, cloudformation.py), each writing its file in
shardline.yml's form with where every value came from (provenance.py); intrinsics (intrinsics.py) and Serverless
variables (variables.py) are resolved in one place each. ``shardline.runtime.config`` builds the result, so the
runtime never sees a dialect. The dialect is detected from the file's content, not its name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import ConfigError, ConfigFile
from ..runtime.config import TOP_KEYS, ProjectConfig, build_config
from ..runtime.destinations import local_stream_for
from .cloudformation import CLOUDFORMATION, load_template
from .intrinsics import read_yaml
from .native import load_native
from .provenance import MappedFile, Translation, describe
from .sam import SAM
from .serverless import load_serverless

__all__ = ["ConfigError", "LoadOptions", "Loaded", "describe", "detect", "load_project"]


@dataclass(frozen=True)
class LoadOptions:
    """What the command line adds: the local region and account, ``--stage``, ``--param KEY=VALUE`` (Serverless),
    ``--parameter-overrides KEY=VALUE`` (SAM and CloudFormation)."""

    region: str = "us-east-1"
    account_id: str = "000000000000"
    stage: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, str] = field(default_factory=dict)
    now_ms: int | None = None


@dataclass(frozen=True)
class Loaded:
    config: ProjectConfig
    translation: Translation

    def describe(self) -> list[str]:
        return describe(self.config, self.translation)

    def check_embedded(self) -> None:
        """What only the embedded engine refuses: an SQS queue or SNS topic whose local stream would be one of the
        project's own streams (`shardline run` sends to the real queue or topic instead)."""
        config = self.config
        ctx = MappedFile(config.path, paths=self.translation.paths)
        for fname, fn in config.functions.items():
            for i, m in enumerate(fn.mappings):
                d = m.on_failure
                if d is not None and d.kind in ("sqs", "sns") and local_stream_for(d.target) in config.streams:
                    raise ctx.fail(
                        f"functions.{fname}.events[{i}].stream.destinations",
                        f"{d.target} is kept in a local stream named '{local_stream_for(d.target)}', which is a "
                        "stream of this project: name the queue or topic differently",
                    )


def detect(doc: Any) -> str:
    """``serverless``, ``sam``, ``cloudformation`` or ``shardline`` from what the file holds."""
    if not isinstance(doc, dict) or "streams" in doc:
        return "shardline"  # only shardline.yml has a top-level `streams`
    transform = doc.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    resources = doc.get("Resources")
    types = {r.get("Type") for r in resources.values() if isinstance(r, dict)} if isinstance(resources, dict) else set()
    if any(str(x).startswith("AWS::Serverless") for x in transforms) or any(
        str(ty).startswith("AWS::Serverless::") for ty in types
    ):
        return "sam"
    if "AWSTemplateFormatVersion" in doc or isinstance(resources, dict):
        return "cloudformation"
    if "provider" in doc and ("service" in doc or "frameworkVersion" in doc):
        return "serverless"
    if "service" in doc and isinstance(doc.get("functions"), dict) and "streams" not in doc:
        return "serverless"
    return "shardline"


def load_project(path: Path, options: LoadOptions | None = None) -> Loaded:
    """The project of ``path`` in any dialect; a ConfigError naming the file, the key path and why otherwise."""
    opts = options or LoadOptions()
    now_ms = opts.now_ms if opts.now_ms is not None else time.time_ns() // 1_000_000
    doc = read_yaml(path)
    plain = ConfigFile(path)
    if not isinstance(doc, dict):
        raise plain.fail(
            "", "the file must be a mapping (shardline.yml, serverless.yml, or a SAM/CloudFormation template)"
        )
    dialect = detect(doc)
    if dialect == "shardline":
        plain.check_keys("", doc, TOP_KEYS)
        t = load_native(plain, doc)
    elif dialect == "serverless":
        t = load_serverless(
            plain, doc, region=opts.region, account_id=opts.account_id, stage=opts.stage, params=opts.params
        )
    else:
        template = SAM if dialect == "sam" else CLOUDFORMATION
        t = load_template(
            plain, doc, template, region=opts.region, account_id=opts.account_id, overrides=opts.overrides
        )
    if dialect != "serverless" and (opts.stage is not None or opts.params):
        raise plain.fail("", f"--stage and --param are for serverless.yml; this is {t.dialect}")
    if dialect not in ("sam", "cloudformation") and opts.overrides:
        raise plain.fail("", f"--parameter-overrides is for SAM and CloudFormation templates; this is {t.dialect}")
    ctx = MappedFile(path, paths=t.paths)
    config = build_config(
        ctx,
        t.native,
        region=opts.region,
        account_id=opts.account_id,
        now_ms=now_ms,
        strict=dialect == "shardline",
        dialect=t.dialect,
        notices=tuple(t.notices),
        consumers=tuple(dict.fromkeys(t.consumers)),  # a consumer both declared and mapped is one
    )
    return Loaded(config, t)
