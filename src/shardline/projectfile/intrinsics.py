"""CloudFormation intrinsics, in one place for every dialect: the YAML short forms (``!Ref``, ``!GetAtt``, ``!Sub``...)
read as their long forms, and ``Ref`` / ``Fn::*`` resolved against a template's Parameters, Conditions, Mappings,
pseudo parameters and resources.

What a resource returns is what CloudFormation documents for it: ``Ref`` of an ``AWS::Kinesis::Stream`` is its name
and ``GetAtt .Arn`` its ARN, ``Ref`` of an ``AWS::SQS::Queue`` its URL, ``Ref`` of an ``AWS::SNS::Topic`` its ARN...
``Fn::ImportValue`` needs another stack's exports, which a local run does not have: it is a clear error.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._config import ConfigError, ConfigFile

__all__ = ["NO_VALUE", "Resolver", "read_yaml"]

_SHORT = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        n: f"Fn::{n}"
        for n in (
            "GetAtt",
            "Sub",
            "Join",
            "If",
            "Select",
            "Split",
            "FindInMap",
            "ImportValue",
            "Equals",
            "Not",
            "And",
            "Or",
            "Base64",
            "GetAZs",
            "Cidr",
            "Length",
            "ToJsonString",
        )
    },
}


class _Loader(yaml.SafeLoader):
    """SafeLoader plus the CloudFormation short forms, each read as ``{long name: argument}``."""


def _construct(long: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def build(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if long == "Fn::GetAtt" and isinstance(value, str):
                head, _, attr = value.partition(".")
                value = [head, attr]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        return {long: value}

    return build


for _short, _long in _SHORT.items():
    _Loader.add_constructor(f"!{_short}", _construct(_long))


def read_yaml(path: Path) -> Any:
    """The file's data, intrinsics in their long form. Errors name the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VAR = re.compile(r"\$\{(!?)([^}]*)\}")


@dataclass
class Resolver:
    """Resolves intrinsics against one template. ``resources``: logical id -> the resource (Type, Properties);
    ``names``: logical id -> the physical name the loader gave it; ``parameters`` are already overridden."""

    ctx: ConfigFile
    region: str
    account_id: str
    stack_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    # key path -> the parameter a Ref there read (for provenance)
    refs: dict[str, str] = field(default_factory=dict)
    _conditions_done: dict[str, bool] = field(default_factory=dict)

    # ----------------------------------------------------------------- walking
    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with every intrinsic replaced; ``AWS::NoValue`` drops a key or list item."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    return self._intrinsic(key, arg, f"{where}.{key}" if where else key)
            out = {}
            for k, v in value.items():
                r = self.resolve(v, f"{where}.{k}" if where else str(k))
                if r is not NO_VALUE:
                    out[k] = r
            return out
        if isinstance(value, list):
            items = [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return [v for v in items if v is not NO_VALUE]
        return value

    def _intrinsic(self, fn: str, arg: Any, where: str) -> Any:
        handler = getattr(self, "_fn_" + fn.removeprefix("Fn::"), None)
        if handler is None:
            raise self.ctx.fail(where, f"{fn} is not supported in a local run")
        return handler(arg, where)

    def _str(self, value: Any, where: str) -> str:
        v = self.resolve(value, where)
        if isinstance(v, bool):
            return "true" if v else "false"
        if not isinstance(v, str | int | float):
            raise self.ctx.fail(where, f"{v!r} is not a string")
        return str(v)

    # ----------------------------------------------------------------- functions
    def _fn_Ref(self, arg: Any, where: str) -> Any:
        if not isinstance(arg, str):
            raise self.ctx.fail(where, "Ref takes the logical id of a parameter or resource")
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if arg in pseudo:
            return pseudo[arg]
        if arg in self.parameters:
            self.refs[where.removesuffix(".Ref")] = arg
            return self.parameters[arg]
        if arg in self.resources:
            return self._ref_resource(arg, where)
        raise self.ctx.fail(where, f"Ref {arg!r}: no parameter or resource of that name in the file")

    def _ref_resource(self, logical: str, where: str) -> Any:
        kind = self._type(logical)
        name = self.names.get(logical, logical)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{self.account_id}:{name}"
        if kind == "AWS::Kinesis::StreamConsumer":
            return self._att(logical, "ConsumerARN", where)
        return name

    def _type(self, logical: str) -> str:
        res = self.resources.get(logical)
        return str(res.get("Type", "")) if isinstance(res, dict) else ""

    def _fn_GetAtt(self, arg: Any, where: str) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not isinstance(arg, list) or len(arg) != 2:
            raise self.ctx.fail(where, "Fn::GetAtt takes [LogicalId, Attribute]")
        logical = self._str(arg[0], where)
        attr = self._str(arg[1], where)
        if logical not in self.resources:
            raise self.ctx.fail(where, f"Fn::GetAtt {logical}.{attr}: no resource {logical!r} in the file")
        return self._att(logical, attr, where)

    def _att(self, logical: str, attr: str, where: str) -> Any:
        kind = self._type(logical)
        name = self.names.get(logical, logical)
        r, a = self.region, self.account_id
        table: dict[str, dict[str, Any]] = {
            "AWS::Kinesis::Stream": {"Arn": f"arn:aws:kinesis:{r}:{a}:stream/{name}"},
            "AWS::SQS::Queue": {
                "Arn": f"arn:aws:sqs:{r}:{a}:{name}",
                "QueueName": name,
                "QueueUrl": f"https://sqs.{r}.amazonaws.com/{a}/{name}",
            },
            "AWS::SNS::Topic": {"TopicArn": f"arn:aws:sns:{r}:{a}:{name}", "TopicName": name},
            "AWS::Lambda::Function": {"Arn": f"arn:aws:lambda:{r}:{a}:function:{name}"},
            "AWS::Serverless::Function": {"Arn": f"arn:aws:lambda:{r}:{a}:function:{name}"},
        }
        if kind == "AWS::Kinesis::StreamConsumer":
            props = self.resources[logical].get("Properties") or {}
            stream_arn = self._str(props.get("StreamARN"), f"Resources.{logical}.Properties.StreamARN")
            consumer = self._str(props.get("ConsumerName"), f"Resources.{logical}.Properties.ConsumerName")
            table[kind] = {
                "ConsumerARN": f"{stream_arn}/consumer/{consumer}:0",
                "ConsumerName": consumer,
                "StreamARN": stream_arn,
                "ConsumerStatus": "ACTIVE",
            }
        attrs = table.get(kind)
        if attrs is None:
            # a resource a local run does not create (an IAM role, a log group...): its attributes only feed
            # properties that are not applied either, so a recognisable stand-in is enough
            if kind == "AWS::IAM::Role" and attr == "Arn":
                return f"arn:aws:iam::{a}:role/{name}"
            return f"{logical}.{attr}"
        if attr not in attrs:
            allowed = ", ".join(attrs)
            raise self.ctx.fail(where, f"Fn::GetAtt {logical}.{attr}: {kind} has no such attribute here ({allowed})")
        return attrs[attr]

    def _fn_Sub(self, arg: Any, where: str) -> str:
        variables: dict[str, Any] = {}
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[1], dict):
                raise self.ctx.fail(where, "Fn::Sub takes a string, or [string, {Name: value}]")
            variables = {k: self._str(v, f"{where}[1].{k}") for k, v in arg[1].items()}
            arg = arg[0]
        if not isinstance(arg, str):
            raise self.ctx.fail(where, "Fn::Sub takes a string")

        def one(m: re.Match[str]) -> str:
            if m.group(1):
                return "${" + m.group(2) + "}"  # ${!Literal}
            name = m.group(2).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, _, attr = name.partition(".")
                if logical in self.resources:
                    return str(self._att(logical, attr, where))
            return self._str({"Ref": name}, where)

        return _SUB_VAR.sub(one, arg)

    def _fn_Join(self, arg: Any, where: str) -> str:
        if not isinstance(arg, list) or len(arg) != 2:
            raise self.ctx.fail(where, "Fn::Join takes [delimiter, [values]]")
        items = self.resolve(arg[1], f"{where}[1]")
        if not isinstance(items, list):
            raise self.ctx.fail(where, "Fn::Join takes [delimiter, [values]]")
        return str(arg[0]).join(self._str(v, where) for v in items)

    def _fn_Select(self, arg: Any, where: str) -> Any:
        if not isinstance(arg, list) or len(arg) != 2:
            raise self.ctx.fail(where, "Fn::Select takes [index, [values]]")
        index = int(self._str(arg[0], where))
        items = self.resolve(arg[1], f"{where}[1]")
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise self.ctx.fail(where, f"Fn::Select: index {index} is out of range")
        return items[index]

    def _fn_Split(self, arg: Any, where: str) -> list[str]:
        if not isinstance(arg, list) or len(arg) != 2:
            raise self.ctx.fail(where, "Fn::Split takes [delimiter, string]")
        return self._str(arg[1], where).split(str(arg[0]))

    def _fn_FindInMap(self, arg: Any, where: str) -> Any:
        if not isinstance(arg, list) or len(arg) not in (3, 4):
            raise self.ctx.fail(where, "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]")
        keys = [self._str(k, where) for k in arg[:3]]
        node: Any = self.mappings
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                    return self.resolve(arg[3]["DefaultValue"], where)
                raise self.ctx.fail(where, f"Fn::FindInMap: Mappings has no {'.'.join(keys)}")
            node = node[k]
        return node

    def _fn_ImportValue(self, arg: Any, where: str) -> Any:
        raise self.ctx.fail(
            where,
            f"Fn::ImportValue {self.resolve(arg, where)!r}: another stack's exports are not available in a local run; "
            "write the value (or a Parameter with it) instead",
        )

    def _fn_Base64(self, arg: Any, where: str) -> str:
        return base64.b64encode(self._str(arg, where).encode()).decode()

    def _fn_ToJsonString(self, arg: Any, where: str) -> str:
        return json.dumps(self.resolve(arg, where), separators=(",", ":"))

    def _fn_If(self, arg: Any, where: str) -> Any:
        if not isinstance(arg, list) or len(arg) != 3 or not isinstance(arg[0], str):
            raise self.ctx.fail(where, "Fn::If takes [ConditionName, value if true, value if false]")
        chosen = arg[1] if self.condition(arg[0], where) else arg[2]
        return self.resolve(chosen, where)

    # ----------------------------------------------------------------- conditions
    def condition(self, name: str, where: str) -> bool:
        if name in self._conditions_done:
            return self._conditions_done[name]
        if name not in self.conditions:
            raise self.ctx.fail(where, f"condition {name!r} is not declared under Conditions")
        self._conditions_done[name] = False  # a cycle reads as false, then is reported below
        value = self._cond(self.conditions[name], f"Conditions.{name}")
        self._conditions_done[name] = value
        return value

    def _cond(self, expr: Any, where: str) -> bool:
        if isinstance(expr, bool):
            return expr
        if not isinstance(expr, dict) or len(expr) != 1:
            raise self.ctx.fail(where, "a condition is Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition")
        ((fn, arg),) = expr.items()
        if fn == "Condition":
            return self.condition(str(arg), where)
        if not isinstance(arg, list):
            raise self.ctx.fail(f"{where}.{fn}", f"{fn} takes a list")
        if fn == "Fn::Equals":
            if len(arg) != 2:
                raise self.ctx.fail(f"{where}.{fn}", "Fn::Equals takes two values")
            a, b = (self.resolve(v, f"{where}.{fn}") for v in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self._cond(arg[0], f"{where}.{fn}[0]")
        if fn == "Fn::And":
            return all(self._cond(c, f"{where}.{fn}[{i}]") for i, c in enumerate(arg))
        if fn == "Fn::Or":
            return any(self._cond(c, f"{where}.{fn}[{i}]") for i, c in enumerate(arg))
        raise self.ctx.fail(where, f"{fn} is not a condition function")
