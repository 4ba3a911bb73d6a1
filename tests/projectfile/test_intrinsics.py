"""CloudFormation intrinsics: the YAML short forms, and Ref / Fn::* resolved as CloudFormation resolves them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shardline._config import ConfigError, ConfigFile
from shardline.projectfile.intrinsics import Resolver, read_yaml

PATH = Path("/srv/app/template.yaml")

RESOURCES: dict[str, Any] = {
    "Orders": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "orders"}},
    "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "orders-dlq"}},
    "Alerts": {"Type": "AWS::SNS::Topic"},
    "Fanout": {
        "Type": "AWS::Kinesis::StreamConsumer",
        "Properties": {"StreamARN": {"Fn::GetAtt": ["Orders", "Arn"]}, "ConsumerName": "fanout"},
    },
}


def resolver(**kw: Any) -> Resolver:
    r = Resolver(
        ConfigFile(PATH),
        region="eu-west-1",
        account_id="123456789012",
        stack_name="shop",
        parameters=kw.pop("parameters", {"Env": "dev", "Shards": 2}),
        resources=RESOURCES,
        names={"Orders": "orders", "Dlq": "orders-dlq"},
        **kw,
    )
    return r


def test_short_forms_read_as_long_forms(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(
        "a: !Ref Env\n"
        "b: !GetAtt Orders.Arn\n"
        "c: !Sub 'x-${Env}'\n"
        "d: !Join [':', [a, !Ref Env]]\n"
        "e: !If [IsProd, 1, 2]\n"
        "f: !Select [0, !Split [',', 'p,q']]\n"
        "g: !FindInMap [M, k, v]\n"
        "h: !ImportValue shared-arn\n"
        "i: !Equals [a, b]\n"
    )
    doc = read_yaml(f)
    assert doc["a"] == {"Ref": "Env"}
    assert doc["b"] == {"Fn::GetAtt": ["Orders", "Arn"]}
    assert doc["c"] == {"Fn::Sub": "x-${Env}"}
    assert doc["d"] == {"Fn::Join": [":", ["a", {"Ref": "Env"}]]}
    assert doc["e"] == {"Fn::If": ["IsProd", 1, 2]}
    assert doc["f"] == {"Fn::Select": [0, {"Fn::Split": [",", "p,q"]}]}
    assert doc["g"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert doc["h"] == {"Fn::ImportValue": "shared-arn"}
    assert doc["i"] == {"Fn::Equals": ["a", "b"]}


def test_refs_and_attributes_return_what_cloudformation_returns() -> None:
    r = resolver()
    assert r.resolve({"Ref": "Orders"}, "x") == "orders"
    assert r.resolve({"Fn::GetAtt": ["Orders", "Arn"]}, "x") == "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
    assert r.resolve({"Ref": "Dlq"}, "x") == "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq"
    assert r.resolve({"Fn::GetAtt": ["Dlq", "Arn"]}, "x") == "arn:aws:sqs:eu-west-1:123456789012:orders-dlq"
    assert r.resolve({"Ref": "Alerts"}, "x") == "arn:aws:sns:eu-west-1:123456789012:Alerts"
    assert r.resolve({"Fn::GetAtt": ["Fanout", "ConsumerARN"]}, "x") == (
        "arn:aws:kinesis:eu-west-1:123456789012:stream/orders/consumer/fanout:0"
    )
    assert r.resolve({"Ref": "AWS::Region"}, "x") == "eu-west-1"
    assert r.resolve({"Ref": "AWS::AccountId"}, "x") == "123456789012"
    assert r.resolve({"Ref": "Shards"}, "x") == 2


def test_sub_join_select_split_findinmap() -> None:
    r = resolver(mappings={"Stage": {"dev": {"Batch": 25}}})
    assert r.resolve({"Fn::Sub": "${AWS::StackName}-${Env}-${Orders.Arn}-${!Literal}"}, "x") == (
        "shop-dev-arn:aws:kinesis:eu-west-1:123456789012:stream/orders-${Literal}"
    )
    assert r.resolve({"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Env"}}]}, "x") == "dev-x"
    assert r.resolve({"Fn::Join": ["/", ["a", {"Ref": "Env"}, 3]]}, "x") == "a/dev/3"
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": [",", "p,q,r"]}]}, "x") == "q"
    assert r.resolve({"Fn::FindInMap": ["Stage", {"Ref": "Env"}, "Batch"]}, "x") == 25


def test_conditions_choose_and_novalue_drops() -> None:
    conditions = {
        "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
        "Both": {"Fn::And": [{"Condition": "IsDev"}, {"Fn::Or": [True, {"Condition": "IsProd"}]}]},
    }
    r = resolver(conditions=conditions)
    assert r.resolve({"Fn::If": ["IsProd", 4, 1]}, "x") == 1
    assert r.resolve({"Fn::If": ["Both", "yes", "no"]}, "x") == "yes"
    value = {"A": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, "B": 2}
    assert r.resolve(value, "x") == {"B": 2}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"Fn::ImportValue": "shared-stream-arn"},
            "Resources.F.Properties.Stream.Fn::ImportValue: Fn::ImportValue 'shared-stream-arn': another stack's "
            "exports are not available in a local run; write the value (or a Parameter with it) instead",
        ),
        (
            {"Ref": "Missing"},
            "Resources.F.Properties.Stream.Ref: Ref 'Missing': no parameter or resource of that name in the file",
        ),
        (
            {"Fn::GetAtt": ["Orders", "StreamArn"]},
            "Resources.F.Properties.Stream.Fn::GetAtt: Fn::GetAtt Orders.StreamArn: AWS::Kinesis::Stream has no such "
            "attribute here (Arn)",
        ),
        (
            {"Fn::If": ["Nope", 1, 2]},
            "Resources.F.Properties.Stream.Fn::If: condition 'Nope' is not declared under Conditions",
        ),
        (
            {"Fn::GetAZs": ""},
            "Resources.F.Properties.Stream.Fn::GetAZs: Fn::GetAZs is not supported in a local run",
        ),
    ],
)
def test_what_cannot_resolve_names_the_key_and_why(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolver().resolve(value, "Resources.F.Properties.Stream")
    assert str(err.value) == f"{PATH}: {message}"
