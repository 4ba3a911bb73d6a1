"""Each dialect loads as written, with its own defaults, inheritance and provenance; every construct a local run
refuses is an error naming the file, the key path and why, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from _shardline import START_MS
from shardline.projectfile import ConfigError, Loaded, LoadOptions, detect, load_project
from shardline.projectfile.intrinsics import read_yaml
from shardline.runtime.mapping import DestinationConfig

from ._files import CLOUDFORMATION, SAM, SERVERLESS, copy_project, write

NOW = LoadOptions(now_ms=START_MS)


def load(path: Path, **kw: object) -> Loaded:
    return load_project(path, LoadOptions(now_ms=START_MS, **kw))  # type: ignore[arg-type]


def test_the_dialect_comes_from_the_content(tmp_path: Path) -> None:
    assert detect(read_yaml(SERVERLESS)) == "serverless"
    assert detect(read_yaml(SAM)) == "sam"
    assert detect(read_yaml(CLOUDFORMATION)) == "cloudformation"
    assert detect({"streams": {}, "functions": {}}) == "shardline"
    # the name decides nothing: a serverless.yml saved as template.yaml is still one
    copy = tmp_path / "template.yaml"
    copy.write_text(SERVERLESS.read_text())
    assert detect(read_yaml(copy)) == "serverless"


def test_serverless_provider_defaults_variables_and_resources() -> None:
    loaded = load(SERVERLESS)
    cfg = loaded.config
    assert cfg.dialect == "Serverless Framework"
    assert set(cfg.streams) == {"orders-dev"}  # created from resources.Resources
    assert cfg.streams["orders-dev"].shards == 2
    assert cfg.streams["orders-dev"].retention_hours == 48
    process = cfg.functions["processOrders"]
    assert process.config.timeout_s == 30  # provider.timeout
    assert process.config.memory_mb == 1024  # the function's own
    assert process.config.environment == {
        "STAGE": "dev",
        "REGION": "eu-west-1",
        "TABLE": "orders-dev",
        "LOG_LEVEL": "INFO",
    }
    (m,) = process.mappings
    assert m.event_source_arn == "arn:aws:kinesis:us-east-1:000000000000:stream/orders-dev"
    assert m.batch_size == 25  # ${self:custom.batchSizes.${sls:stage}}
    assert m.on_failure == DestinationConfig("sqs", "arn:aws:sqs:eu-west-1:000000000000:orders-dlq-dev")
    audit = cfg.functions["auditOrders"]
    assert audit.config.memory_mb == 512  # provider.memorySize
    (a,) = audit.mappings
    assert (a.batch_size, a.starting_position, a.enabled) == (10, "TRIM_HORIZON", True)  # Serverless's defaults
    assert [(c.stream, c.name) for c in cfg.consumers] == [("orders-dev", "auditOrders-orders-dev-consumer")]
    text = "\n".join(loaded.describe())
    assert "timeout 30 s  [provider.timeout]" in text
    assert "memorySize 512 MB  [provider.memorySize]" in text
    assert "BatchSize 10  [Serverless default]" in text
    assert (
        "BatchSize 25  [file: functions.processOrders.events[0].stream.batchSize, via ${sls:stage} (sls:stage), "
        "${self:custom.batchSizes.dev} (self:custom.batchSizes.dev)]"
    ) in text
    assert "MaximumRecordAgeInSeconds -1  [AWS default]" in text
    notices = "\n".join(cfg.notices)
    assert "plugins: serverless-python-requirements is not run locally" in notices
    assert "provider.iam: not applied locally" in notices
    assert "fan-out delivery not applied" not in notices
    assert "functions.auditOrders.events[1] (http): not applied locally" in notices
    assert "stream/orders-dev is served as arn:aws:kinesis:us-east-1:000000000000:stream/orders-dev" in notices


def test_serverless_stage_and_params_from_the_command_line() -> None:
    cfg = load(SERVERLESS, stage="prod", params={"table": "live-orders"}).config
    assert set(cfg.streams) == {"orders-prod"}
    fn = cfg.functions["processOrders"]
    assert fn.config.environment["STAGE"] == "prod"
    assert fn.config.environment["TABLE"] == "live-orders"
    assert fn.mappings[0].batch_size == 100


def test_sam_globals_parameters_and_events() -> None:
    loaded = load(SAM)
    cfg = loaded.config
    assert cfg.dialect == "AWS SAM"
    assert cfg.streams["orders-dev"].shards == 1  # !If [IsProd, 4, 1]
    fn = cfg.functions["ProcessOrdersFunction"]
    assert fn.config.handler == "src/app.lambda_handler"  # CodeUri + Handler
    assert fn.config.timeout_s == 20  # Globals
    assert fn.config.memory_mb == 1024  # its own, over Globals' 256
    assert fn.config.environment == {
        "ENVIRONMENT": "dev",
        "POWERTOOLS_SERVICE_NAME": "orders",
        "TABLE_NAME": "orders-dev",
    }
    (m,) = fn.mappings
    assert m.batch_size == 50  # !Ref BatchSize (a Number parameter)
    assert m.filter_patterns == ('{"data": {"kind": ["order_created"]}}',)
    assert m.report_batch_item_failures
    assert m.on_failure == DestinationConfig("sqs", "arn:aws:sqs:us-east-1:000000000000:orders-dlq-dev")
    text = "\n".join(loaded.describe())
    assert "timeout 20 s  [Globals.Function.Timeout]" in text
    assert "Architectures ['arm64']  [Globals.Function.Architectures]" in text
    assert "BatchSize 50  [file: Resources.ProcessOrdersFunction.Properties.Events.OrdersStreamEvent" in text
    over_text = "\n".join(load(SAM, overrides={"BatchSize": "500"}).describe())
    assert (
        "BatchSize 500  [file: Resources.ProcessOrdersFunction.Properties.Events.OrdersStreamEvent.Properties."
        "BatchSize, via Parameters.BatchSize (--parameter-overrides BatchSize)]"
    ) in over_text
    over = load(SAM, overrides={"Environment": "prod", "BatchSize": "500"}).config
    assert over.streams["orders-prod"].shards == 4
    assert over.functions["ProcessOrdersFunction"].mappings[0].batch_size == 500
    assert "Environment = 'prod'  [--parameter-overrides Environment]" in "\n".join(
        load(SAM, overrides={"Environment": "prod"}).describe()
    )


def test_cloudformation_event_source_mapping() -> None:
    loaded = load(CLOUDFORMATION)
    cfg = loaded.config
    fn = cfg.functions["click-counter"]
    assert fn.config.timeout_s == 15
    assert fn.config.memory_mb == 128  # CloudFormation's default
    assert fn.config.environment == {"STREAM": "clicks"}
    (m,) = fn.mappings
    assert (m.batch_size, m.maximum_retry_attempts, m.bisect_batch_on_function_error) == (20, 0, True)
    assert m.parallelization_factor == 2
    assert m.on_failure == DestinationConfig("sns", "arn:aws:sns:us-east-1:000000000000:clicks-failures")
    assert "Resources.ClickRole (AWS::IAM::Role): not applied locally" in cfg.notices


SAM_FN = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  S:
    Type: AWS::Kinesis::Stream
    Properties: {{ShardCount: 1}}
  F:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Runtime: {runtime}
      Events:
        E:
          Type: Kinesis
          Properties:
{event}
"""
EVENT = "            Stream: !GetAtt S.Arn\n            StartingPosition: LATEST\n"


@pytest.mark.parametrize(
    ("runtime", "event", "where", "why"),
    [
        (
            "nodejs20.x",
            EVENT,
            "Resources.F.Properties.Runtime",
            "function F uses runtime 'nodejs20.x': only Python runtimes (python3.x) run here",
        ),
        (
            "python3.12",
            "            Stream: !GetAtt S.Arn\n",
            "Resources.F.Properties.Events.E.Properties",
            "StartingPosition is required for a Kinesis stream (AWS SAM has no default)",
        ),
        (
            "python3.12",
            EVENT + "            BatchSize: 20000\n",
            "Resources.F.Properties.Events.E.Properties.BatchSize",
            "20000 is not allowed (allowed: an integer from 1 to 10000)",
        ),
        (
            "python3.12",
            EVENT + "            Queues: [q]\n",
            "Resources.F.Properties.Events.E.Properties.Queues",
            "Queues does not apply to a Kinesis stream",
        ),
        (
            "python3.12",
            EVENT + "            DestinationConfig: {OnFailure: {Destination: 'arn:aws:s3:::bucket'}}\n",
            "Resources.F.Properties.Events.E.Properties.DestinationConfig.OnFailure.Destination",
            "'arn:aws:s3:::bucket': a s3 destination is not supported here (allowed: an SQS queue, SNS topic or "
            "Kinesis stream)",
        ),
        (
            "python3.12",
            "            Stream: !ImportValue shared-stream\n            StartingPosition: LATEST\n",
            "Resources.F.Properties.Events.E.Properties.Stream.Fn::ImportValue",
            "Fn::ImportValue 'shared-stream': another stack's exports are not available in a local run",
        ),
        (
            "python3.12",
            "            Stream: arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024\n"
            "            StartingPosition: LATEST\n",
            "Resources.F.Properties.Events.E.Properties.Stream",
            "'arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024' is not a Kinesis stream ARN (only Kinesis "
            "streams run here)",
        ),
        (
            "python3.12",
            EVENT + "            BatchSise: 10\n",
            "Resources.F.Properties.Events.E.Properties.BatchSise",
            "unknown property of a Kinesis event source mapping (AWS SAM)",
        ),
    ],
)
def test_sam_rejections(tmp_path: Path, runtime: str, event: str, where: str, why: str) -> None:
    path = write(tmp_path, SAM_FN.format(runtime=runtime, event=event))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: {where}: {why}")


SLS = """\
service: s
provider:
  name: aws
  runtime: {runtime}
functions:
  f:
    handler: app.handler
    events:
      - stream:
{event}
"""
SLS_EVENT = "          arn: arn:aws:kinesis:us-east-1:000000000000:stream/orders\n"


@pytest.mark.parametrize(
    ("runtime", "event", "where", "why"),
    [
        (
            "nodejs20.x",
            SLS_EVENT,
            "provider.runtime",
            "function f uses runtime 'nodejs20.x': only Python runtimes (python3.x) run here",
        ),
        (
            "python3.12",
            SLS_EVENT + "          batchSize: ${self:custom.size}\n",
            "functions.f.events[0].stream.batchSize",
            "${self:custom.size} does not resolve and has no fallback",
        ),
        (
            "python3.12",
            SLS_EVENT
            + "          destinations: {onFailure: {arn: 'arn:aws:sns:us-east-1:000000000000:t', type: sqs}}\n",
            "functions.f.events[0].stream.destinations.onFailure.type",
            "'sqs' does not match the ARN's service ('sns')",
        ),
        (
            "python3.12",
            "          arn: arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/1\n",
            "functions.f.events[0].stream.arn",
            "'arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/1' (type dynamodb) is not a Kinesis stream: only "
            "Kinesis streams run here",
        ),
        (
            "python3.12",
            SLS_EVENT + "          maximumRecordAgeInSeconds: 30\n",
            "functions.f.events[0].stream.maximumRecordAgeInSeconds",
            "30 is not allowed (allowed: -1 (no limit) or an integer from 60 to 604800)",
        ),
        (
            "python3.12",
            SLS_EVENT + "          consumer: maybe\n",
            "functions.f.events[0].stream.consumer",
            "'maybe' is not allowed (allowed: true, or a stream consumer ARN)",
        ),
        (
            "python3.12",
            SLS_EVENT + "          batchsize: 10\n",
            "functions.f.events[0].stream.batchsize",
            "unknown key of a stream event",
        ),
    ],
)
def test_serverless_rejections(tmp_path: Path, runtime: str, event: str, where: str, why: str) -> None:
    path = write(tmp_path, SLS.format(runtime=runtime, event=event), name="serverless.yml")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: {where}: {why}")


def test_cloudformation_rejections(tmp_path: Path) -> None:
    path = copy_project(CLOUDFORMATION, tmp_path)
    text = path.read_text()
    path.write_text(text.replace("      FunctionName: !Ref ClickFunction\n", "      FunctionName: other\n"))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == (
        f"{path}: Resources.ClickMapping.Properties.FunctionName: 'other' is not a function declared in this template"
    )
    path.write_text(
        text.replace("  StreamName:\n    Type: String\n    Default: clicks\n", "  StreamName:\n    Type: String\n")
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == (
        f"{path}: Parameters.StreamName: no Default: give one, or --parameter-overrides StreamName=VALUE"
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(path, overrides={"Nope": "x"})
    assert "--parameter-overrides names ['Nope'], not declared here" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(path, stage="prod")
    assert "--stage and --param are for serverless.yml; this is AWS CloudFormation" in str(err.value)


def test_an_undeclared_stream_of_another_account_must_exist_at_start(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        SLS.format(runtime="python3.12", event="          arn: arn:aws:kinesis:eu-west-1:123456789012:stream/legacy\n"),
        name="serverless.yml",
    )
    cfg = load(path).config
    (m,) = cfg.functions["f"].mappings
    assert m.event_source_arn == "arn:aws:kinesis:us-east-1:000000000000:stream/legacy"
    assert cfg.undeclared[m.uuid] == (
        f"{path}: functions.f.events[0].stream.arn: stream 'legacy' is neither declared in the file nor present"
    )


CFN = """\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  S:
    Type: AWS::Kinesis::Stream
    Properties: {{ShardCount: 1{stream}}}
  F:
    Type: AWS::Lambda::Function
    Properties: {{Handler: app.handler, Runtime: {runtime}, Code: {{ZipFile: x}}}}
  M:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref F
      EventSourceArn: !GetAtt S.Arn
      StartingPosition: LATEST
{extra}"""


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        (
            CFN.format(stream="", runtime="java21", extra=""),
            "Resources.F.Properties.Runtime",
            "function F uses runtime 'java21': only Python runtimes (python3.x) run here",
        ),
        (
            CFN.format(stream=", Shards: 2", runtime="python3.12", extra=""),
            "Resources.S.Properties.Shards",
            "unknown AWS::Kinesis::Stream property",
        ),
        (
            CFN.format(
                stream="", runtime="python3.12", extra="      DestinationConfig: {OnSuccess: {Destination: x}}\n"
            ),
            "Resources.M.Properties.DestinationConfig.OnSuccess",
            "Kinesis event source mappings have no on-success destination",
        ),
        (
            CFN.format(stream="", runtime="python3.12", extra="      SelfManagedEventSource: {}\n"),
            "Resources.M.Properties.SelfManagedEventSource",
            "SelfManagedEventSource does not apply to a Kinesis stream",
        ),
        (
            CFN.format(stream="", runtime="python3.12", extra="      TumblingWindowInSeconds: 901\n"),
            "Resources.M.Properties.TumblingWindowInSeconds",
            "901 is not allowed (allowed: an integer from 0 to 900)",
        ),
        (
            SAM_FN.format(runtime="python3.12", event=EVENT).replace(
                "      Handler: app.handler\n", "      Handler: app.handler\n      InlineCode: 'x'\n"
            ),
            "Resources.F.Properties.InlineCode",
            "InlineCode is not run locally: put the code in a file and set CodeUri",
        ),
        (
            "Globals:\n  Function:\n    Timeuot: 3\n" + SAM_FN.format(runtime="python3.12", event=EVENT),
            "Globals.Function.Timeuot",
            "not a property Globals.Function can set",
        ),
        (
            SLS.format(runtime="python3.12", event=SLS_EVENT).replace("name: aws", "name: azure"),
            "provider.name",
            "'azure': only the aws provider runs here",
        ),
    ],
)
def test_more_rejections(tmp_path: Path, text: str, where: str, why: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: {where}: {why}")


def test_a_native_file_with_service_and_provider_stays_native() -> None:
    assert detect({"service": "s", "provider": {"name": "aws"}, "streams": {}, "functions": {}}) == "shardline"


def test_a_mapping_on_a_stream_consumer_registers_it_and_reads_through_it(tmp_path: Path) -> None:
    text = CFN.format(stream="", runtime="python3.12", extra="").replace(
        "      EventSourceArn: !GetAtt S.Arn\n", "      EventSourceArn: !GetAtt C.ConsumerARN\n"
    ) + (
        "  C:\n    Type: AWS::Kinesis::StreamConsumer\n"
        "    Properties: {StreamARN: !GetAtt S.Arn, ConsumerName: fanout}\n"
    )
    cfg = load(write(tmp_path, text)).config
    (m,) = cfg.functions["F"].mappings
    assert m.event_source_arn == "arn:aws:kinesis:us-east-1:000000000000:stream/S"
    assert [(c.stream, c.name) for c in cfg.consumers] == [("S", "fanout")]
    assert cfg.mapping_consumers[m.uuid].name == "fanout"  # read by SubscribeToShard through it
    assert not any("fan-out delivery not applied" in n for n in cfg.notices)


def test_shardline_yml_provider_is_inherited_not_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "service: s\n"
        "provider: {runtime: python3.12, timeout: 30, memorySize: 1024, environment: {STAGE: dev}, vpc: {}}\n"
        "streams: {orders: {shards: 1}}\n"
        "functions:\n  f:\n    handler: app.handler\n    memorySize: 256\n    environment: {LEVEL: INFO}\n",
        name="shardline.yml",
    )
    loaded = load(path)
    cfg = loaded.config.functions["f"].config
    assert (cfg.timeout_s, cfg.memory_mb) == (30, 256)
    assert cfg.environment == {"STAGE": "dev", "LEVEL": "INFO"}
    assert loaded.config.notices == ("provider.vpc: not applied locally",)
    text = "\n".join(loaded.describe())
    assert "timeout 30 s  [provider.timeout]" in text
    assert "memorySize 256 MB  [file: functions.f.memorySize]" in text


def test_up_refuses_a_queue_named_like_a_stream_of_the_project(tmp_path: Path) -> None:
    path = copy_project(SAM, tmp_path)
    path.write_text(
        path.read_text().replace(
            'QueueName: !Sub "orders-dlq-${Environment}"', 'QueueName: !Sub "orders-${Environment}"'
        )
    )
    loaded = load(path)  # fine for `shardline run`: the real queue
    with pytest.raises(ConfigError) as err:
        loaded.check_embedded()
    assert str(err.value) == (
        f"{path}: Resources.ProcessOrdersFunction.Properties.Events.OrdersStreamEvent.Properties.DestinationConfig: "
        "arn:aws:sqs:us-east-1:000000000000:orders-dev is kept in a local stream named 'orders-dev', which is a "
        "stream of this project: name the queue or topic differently"
    )
