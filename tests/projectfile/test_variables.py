"""Serverless variables: self, opt, sls, env, aws, param; nested; fallbacks; types kept for whole values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shardline._config import ConfigError, ConfigFile
from shardline.projectfile.variables import Variables

PATH = Path("/srv/app/serverless.yml")
DOC: dict[str, Any] = {
    "service": "shop",
    "custom": {
        "batch": {"dev": 25, "prod": 100},
        "arn": {"Fn::GetAtt": ["Orders", "Arn"]},
        "name": "orders-${sls:stage}",
        "loop": "${self:custom.loop}",
    },
    "params": {"default": {"table": "orders"}, "prod": {"table": "orders-live"}},
}


def variables(**kw: Any) -> Variables:
    defaults: dict[str, Any] = {"stage": "dev", "region": "eu-west-1", "account_id": "123456789012", "env": {}}
    return Variables(ConfigFile(PATH), DOC, **{**defaults, **kw})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${self:service}", "shop"),
        ("${self:custom.batch.${sls:stage}}", 25),  # nested, and a whole value keeps its type
        ("${self:custom.arn}", {"Fn::GetAtt": ["Orders", "Arn"]}),
        ("${self:custom.name}", "orders-dev"),  # a referenced value is resolved in turn
        ("${opt:stage, 'dev'}-x", "dev-x"),
        ("${opt:stage, ${self:custom.name}}", "orders-dev"),  # a variable as the fallback
        ("${env:MISSING, ${env:ALSO_MISSING, 'last'}}", "last"),
        ("${aws:region}/${aws:accountId}", "eu-west-1/123456789012"),
        ("${param:table}", "orders"),
        ("${ssm:/shop/key, 'local'}", "local"),
        ("plain", "plain"),
        ("${env:COUNT, 3}", 3),
    ],
)
def test_resolves(text: str, expected: Any) -> None:
    assert variables().resolve(text, "functions.f.x") == expected


def test_command_line_and_environment_win() -> None:
    v = variables(stage="prod", options={"stage": "prod"}, params={"table": "from-cli"}, env={"LEVEL": "DEBUG"})
    assert v.resolve("${opt:stage, 'dev'}", "x") == "prod"
    assert v.resolve("${self:custom.batch.${sls:stage}}", "x") == 100
    assert v.resolve("${param:table}", "x") == "from-cli"
    assert v.resolve("${env:LEVEL, 'INFO'}", "x") == "DEBUG"
    assert variables(stage="prod").resolve("${param:table}", "x") == "orders-live"  # params.<stage>
    assert v.used["${param:table}"] == ("from-cli", "--param table")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${self:custom.nope}", "provider.x: ${self:custom.nope} does not resolve and has no fallback"),
        ("${env:NOT_SET}", "provider.x: ${env:NOT_SET} does not resolve and has no fallback"),
        (
            "${ssm:/shop/key}",
            "provider.x: ${ssm:/shop/key}: the 'ssm' source is not available in a local run; write a fallback "
            "(${ssm:/shop/key, 'value'}) or the value itself",
        ),
        ("${self:custom.loop}", "variables refer to each other in a cycle"),
        ("a-${self:custom.batch}", "provider.x: ${self:custom.batch} is a dict, inside a string"),
    ],
)
def test_what_does_not_resolve_names_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        variables().resolve(text, "provider.x")
    assert message in str(err.value)
    assert str(err.value).startswith(f"{PATH}: provider.x")
