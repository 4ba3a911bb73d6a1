import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.awscore.exception.AwsServiceException;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.core.SdkField;
import software.amazon.awssdk.core.SdkPojo;
import software.amazon.awssdk.core.interceptor.Context;
import software.amazon.awssdk.core.interceptor.ExecutionAttributes;
import software.amazon.awssdk.core.interceptor.ExecutionInterceptor;
import software.amazon.awssdk.core.protocol.MarshallingType;
import software.amazon.awssdk.core.traits.ListTrait;
import software.amazon.awssdk.core.traits.MapTrait;
import software.amazon.awssdk.core.waiters.WaiterResponse;
import software.amazon.awssdk.http.Http2Metric;
import software.amazon.awssdk.http.HttpMetric;
import software.amazon.awssdk.metrics.MetricCollection;
import software.amazon.awssdk.metrics.MetricPublisher;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisClient;
import software.amazon.awssdk.services.kinesis.model.DescribeStreamRequest;
import software.amazon.awssdk.services.kinesis.model.DescribeStreamResponse;
import software.amazon.awssdk.services.kinesis.model.KinesisRequest;
import software.amazon.awssdk.services.kinesis.model.SubscribeToShardEvent;
import software.amazon.awssdk.services.kinesis.model.SubscribeToShardEventStream;
import software.amazon.awssdk.services.kinesis.model.SubscribeToShardRequest;
import software.amazon.awssdk.services.kinesis.model.SubscribeToShardResponseHandler;
import software.amazon.awssdk.utils.builder.SdkBuilder;

/**
 * Drives the AWS SDK for Java v2 Kinesis client from line-delimited JSON on stdin, one call per line, and answers each
 * with one JSON line on stdout.
 *
 * <p>The client is built with the SDK's defaults: only the endpoint, the region and static credentials are set (the
 * sync client then speaks CBOR through the Apache HTTP client over HTTP/1.1; the async one CBOR through Netty over
 * HTTP/2). Two observers only watch: an interceptor records the Content-Type of each request and response so that
 * the tests can tell which protocol was spoken, and a metric publisher receives the SDK's metrics of each call, among
 * them the HTTP client's name and the HTTP/2 stream window sizes, which the SDK reports only for a request it sent
 * over an HTTP/2 connection ("$httpMetrics" answers what they showed).
 *
 * <p>Arguments: the endpoint, "sync" or "async", the access key id and the secret key.
 *
 * <p>A call names an operation as the model does ("PutRecords") and gives its members as the model does. Requests
 * and responses are mapped through the SDK's own model fields (SdkField), so every member goes through the SDK's
 * marshallers: a timestamp is {"$ts": epoch millis}, a blob {"$b64": base64}. An error answers {"error": {...}} with
 * the exception's class, message and AWS error code. "$credentials": [key id, secret] signs that one call with
 * other credentials (the SDK's per-request override).
 */
public final class KinesisBridge {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    private static final String MODEL = "software.amazon.awssdk.services.kinesis.model.";

    private static final class Wire implements ExecutionInterceptor {
        volatile String requestType = "";
        volatile String responseType = "";
        int executions;

        @Override
        public void beforeExecution(Context.BeforeExecution context, ExecutionAttributes attributes) {
            synchronized (this) {
                executions++;
            }
        }

        @Override
        public void beforeTransmission(Context.BeforeTransmission context, ExecutionAttributes attributes) {
            requestType = context.httpRequest().firstMatchingHeader("Content-Type").orElse("");
        }

        @Override
        public void afterTransmission(Context.AfterTransmission context, ExecutionAttributes attributes) {
            responseType = context.httpResponse().firstMatchingHeader("Content-Type").orElse("");
        }
    }

    /** The SDK's metrics of each call, as far as they tell the HTTP client and protocol it used. */
    private static final class Protocols implements MetricPublisher {
        private int published;
        private int http2;
        private final Set<String> clients = new TreeSet<>();

        @Override
        public synchronized void publish(MetricCollection metrics) {
            published++;
            if (reportsHttp2(metrics)) {
                http2++;
            }
            collectClients(metrics);
            notifyAll();
        }

        private static boolean reportsHttp2(MetricCollection metrics) {
            if (!metrics.metricValues(Http2Metric.LOCAL_STREAM_WINDOW_SIZE_IN_BYTES).isEmpty()) {
                return true;
            }
            return metrics.children().stream().anyMatch(Protocols::reportsHttp2);
        }

        private void collectClients(MetricCollection metrics) {
            clients.addAll(metrics.metricValues(HttpMetric.HTTP_CLIENT_NAME));
            metrics.children().forEach(this::collectClients);
        }

        /** {"calls", "http2Calls", "httpClients"} once every call made so far has published its metrics. */
        synchronized JsonNode answer(Wire wire) throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            int executions;
            while (true) {
                synchronized (wire) {
                    executions = wire.executions;
                }
                long left = deadline - System.nanoTime();
                if (published >= executions || left <= 0) {
                    break;
                }
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
            ObjectNode out = NODES.objectNode();
            out.put("calls", published);
            out.put("http2Calls", http2);
            ArrayNode names = out.putArray("httpClients");
            clients.forEach(names::add);
            return out;
        }

        @Override
        public void close() {}
    }

    private KinesisBridge() {}

    public static void main(String[] args) throws Exception {
        URI endpoint = URI.create(args[0]);
        boolean async = args[1].equals("async");
        Wire wire = new Wire();
        Protocols protocols = new Protocols();
        StaticCredentialsProvider credentials =
                StaticCredentialsProvider.create(AwsBasicCredentials.create(args[2], args[3]));
        Object client =
                async
                        ? KinesisAsyncClient.builder()
                                .endpointOverride(endpoint)
                                .region(Region.US_EAST_1)
                                .credentialsProvider(credentials)
                                .overrideConfiguration(
                                        c -> c.addExecutionInterceptor(wire).addMetricPublisher(protocols))
                                .build()
                        : KinesisClient.builder()
                                .endpointOverride(endpoint)
                                .region(Region.US_EAST_1)
                                .credentialsProvider(credentials)
                                .overrideConfiguration(
                                        c -> c.addExecutionInterceptor(wire).addMetricPublisher(protocols))
                                .build();
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        out.println(JSON.writeValueAsString(NODES.objectNode().put("ready", async ? "async" : "sync")));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            JsonNode call = JSON.readTree(line);
            ObjectNode answer = NODES.objectNode();
            wire.requestType = "";
            wire.responseType = "";
            try {
                String op = call.get("op").asText();
                JsonNode params = call.get("params");
                answer.set("result", op.equals("$httpMetrics") ? protocols.answer(wire) : invoke(client, op, params));
            } catch (Throwable t) {
                answer.set("error", describe(unwrap(t)));
            }
            answer.put("requestType", wire.requestType);
            answer.put("responseType", wire.responseType);
            out.println(JSON.writeValueAsString(answer));
        }
        ((AutoCloseable) client).close();
    }

    private static JsonNode invoke(Object client, String op, JsonNode params) throws Exception {
        if (op.equals("waitUntilStreamExists")) {
            return waitUntilStreamExists(client, params);
        }
        if (op.equals("SubscribeToShard")) {
            return subscribeToShard((KinesisAsyncClient) client, params);
        }
        Class<?> requestClass = Class.forName(MODEL + op + "Request");
        JsonNode credentials = params == null ? null : params.get("$credentials");
        if (credentials != null) {
            params = ((ObjectNode) params).deepCopy();
            ((ObjectNode) params).remove("$credentials");
        }
        Object request = build(requestClass.getMethod("builder").invoke(null), params);
        if (credentials != null) {
            // The SDK's per-request override: this call is signed with other credentials.
            StaticCredentialsProvider other = StaticCredentialsProvider.create(
                    AwsBasicCredentials.create(credentials.get(0).asText(), credentials.get(1).asText()));
            request = ((KinesisRequest) request)
                    .toBuilder()
                    .overrideConfiguration(o -> o.credentialsProvider(other))
                    .build();
        }
        String method = Character.toLowerCase(op.charAt(0)) + op.substring(1);
        Class<?> clientClass = client instanceof KinesisClient ? KinesisClient.class : KinesisAsyncClient.class;
        Object response = clientClass.getMethod(method, requestClass).invoke(client, request);
        if (response instanceof CompletableFuture<?> future) {
            response = future.join();
        }
        return toJson((SdkPojo) response);
    }

    /** The SDK's StreamExists waiter (DescribeStream until StreamStatus is ACTIVE). */
    private static JsonNode waitUntilStreamExists(Object client, JsonNode params) throws Exception {
        DescribeStreamRequest request = (DescribeStreamRequest) build(DescribeStreamRequest.builder(), params);
        WaiterResponse<DescribeStreamResponse> waited;
        if (client instanceof KinesisClient sync) {
            waited = sync.waiter().waitUntilStreamExists(request);
        } else {
            waited = ((KinesisAsyncClient) client).waiter().waitUntilStreamExists(request).join();
        }
        ObjectNode out = NODES.objectNode();
        out.put("attempts", waited.attemptsExecuted());
        waited.matched().response().ifPresent(r -> out.set("response", toJson(r)));
        waited.matched().exception().ifPresent(e -> out.set("exception", describe(e)));
        return out;
    }

    /**
     * SubscribeToShard (async client only): collects the events of one subscription until they hold "$records"
     * records or one has no ContinuationSequenceNumber (the shard's end), then cancels it; fails after
     * "$timeoutMs". Answers {"events": [...]}, each event with its "$type".
     */
    private static JsonNode subscribeToShard(KinesisAsyncClient client, JsonNode params) throws Exception {
        int want = params.path("$records").asInt(1);
        long timeoutMs = params.path("$timeoutMs").asLong(60_000);
        ObjectNode members = ((ObjectNode) params).deepCopy();
        members.remove("$records");
        members.remove("$timeoutMs");
        SubscribeToShardRequest request = (SubscribeToShardRequest) build(SubscribeToShardRequest.builder(), members);
        ArrayNode events = NODES.arrayNode();
        CompletableFuture<Void> enough = new CompletableFuture<>();
        SubscribeToShardResponseHandler handler = SubscribeToShardResponseHandler.builder()
                .onError(enough::completeExceptionally)
                .onEventStream(publisher -> publisher.subscribe(new Subscriber<SubscribeToShardEventStream>() {
                    private Subscription subscription;
                    private int records;

                    @Override
                    public void onSubscribe(Subscription s) {
                        subscription = s;
                        s.request(Long.MAX_VALUE);
                    }

                    @Override
                    public void onNext(SubscribeToShardEventStream event) {
                        ObjectNode json = toJson((SdkPojo) event);
                        json.put("$type", event.sdkEventType().toString());
                        synchronized (events) {
                            events.add(json);
                        }
                        if (event instanceof SubscribeToShardEvent shardEvent) {
                            records += shardEvent.records().size();
                            if (records >= want || shardEvent.continuationSequenceNumber() == null) {
                                enough.complete(null);
                                subscription.cancel();
                            }
                        }
                    }

                    @Override
                    public void onError(Throwable t) {
                        enough.completeExceptionally(t);
                    }

                    @Override
                    public void onComplete() {
                        enough.complete(null);
                    }
                }))
                .build();
        CompletableFuture<Void> call = client.subscribeToShard(request, handler);
        call.whenComplete((ignored, t) -> {
            if (t != null) {
                enough.completeExceptionally(t);
            } else {
                enough.complete(null);
            }
        });
        try {
            enough.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new CompletionException(e.getCause());
        }
        ObjectNode out = NODES.objectNode();
        synchronized (events) {
            out.set("events", events.deepCopy());
        }
        return out;
    }

    private static Object build(Object builder, JsonNode params) {
        SdkPojo pojo = (SdkPojo) builder;
        if (params != null) {
            Iterator<Map.Entry<String, JsonNode>> names = params.fields();
            while (names.hasNext()) {
                Map.Entry<String, JsonNode> entry = names.next();
                SdkField<?> field = fieldNamed(pojo, entry.getKey());
                field.set(builder, fromJson(field, entry.getValue()));
            }
        }
        return ((SdkBuilder<?, ?>) builder).build();
    }

    private static SdkField<?> fieldNamed(SdkPojo pojo, String name) {
        for (SdkField<?> field : pojo.sdkFields()) {
            if (field.locationName().equals(name)) {
                return field;
            }
        }
        throw new IllegalArgumentException("no member " + name + " in " + pojo.getClass().getName());
    }

    private static Object fromJson(SdkField<?> field, JsonNode value) {
        MarshallingType<?> type = field.marshallingType();
        if (value == null || value.isNull()) {
            return null;
        }
        if (type == MarshallingType.STRING) {
            return value.asText();
        }
        if (type == MarshallingType.INTEGER) {
            return value.asInt();
        }
        if (type == MarshallingType.LONG) {
            return value.asLong();
        }
        if (type == MarshallingType.DOUBLE) {
            return value.asDouble();
        }
        if (type == MarshallingType.BOOLEAN) {
            return value.asBoolean();
        }
        if (type == MarshallingType.INSTANT) {
            return Instant.ofEpochMilli(value.get("$ts").asLong());
        }
        if (type == MarshallingType.SDK_BYTES) {
            return SdkBytes.fromByteArray(Base64.getDecoder().decode(value.get("$b64").asText()));
        }
        if (type == MarshallingType.SDK_POJO) {
            return build(field.constructor().get(), value);
        }
        if (type == MarshallingType.LIST) {
            SdkField<?> member = field.getTrait(ListTrait.class).memberFieldInfo();
            List<Object> items = new ArrayList<>();
            for (JsonNode item : value) {
                items.add(fromJson(member, item));
            }
            return items;
        }
        if (type == MarshallingType.MAP) {
            SdkField<?> member = field.getTrait(MapTrait.class).valueFieldInfo();
            Map<String, Object> items = new LinkedHashMap<>();
            value.fields().forEachRemaining(e -> items.put(e.getKey(), fromJson(member, e.getValue())));
            return items;
        }
        throw new IllegalArgumentException("unsupported member type " + type + " of " + field.memberName());
    }

    private static ObjectNode toJson(SdkPojo pojo) {
        ObjectNode out = NODES.objectNode();
        for (SdkField<?> field : pojo.sdkFields()) {
            Object value = field.getValueOrDefault(pojo);
            if (value != null) {
                out.set(field.locationName(), toJson(field, value));
            }
        }
        return out;
    }

    private static JsonNode toJson(SdkField<?> field, Object value) {
        if (value instanceof SdkPojo pojo) {
            return toJson(pojo);
        }
        if (value instanceof Instant instant) {
            ObjectNode ts = NODES.objectNode();
            ts.put("$ts", instant.toEpochMilli());
            ts.put("nanos", instant.getNano());
            return ts;
        }
        if (value instanceof SdkBytes bytes) {
            return NODES.objectNode().put("$b64", Base64.getEncoder().encodeToString(bytes.asByteArray()));
        }
        if (value instanceof List<?> list) {
            // An absent list reads as the SDK's empty auto-construct list; it is shown as absent.
            if (list instanceof software.amazon.awssdk.core.util.SdkAutoConstructList) {
                return NODES.nullNode();
            }
            SdkField<?> member = field.getTrait(ListTrait.class).memberFieldInfo();
            ArrayNode items = NODES.arrayNode();
            for (Object item : list) {
                items.add(toJson(member, item));
            }
            return items;
        }
        if (value instanceof Map<?, ?> map) {
            if (map instanceof software.amazon.awssdk.core.util.SdkAutoConstructMap) {
                return NODES.nullNode();
            }
            SdkField<?> member = field.getTrait(MapTrait.class).valueFieldInfo();
            ObjectNode items = NODES.objectNode();
            map.forEach((k, v) -> items.set(String.valueOf(k), toJson(member, v)));
            return items;
        }
        return JSON.valueToTree(value);
    }

    private static Throwable unwrap(Throwable t) {
        while ((t instanceof InvocationTargetException || t instanceof CompletionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    private static ObjectNode describe(Throwable t) {
        ObjectNode error = NODES.objectNode();
        error.put("class", t.getClass().getName());
        error.put("message", String.valueOf(t.getMessage()));
        if (t instanceof AwsServiceException aws) {
            error.put("status", aws.statusCode());
            if (aws.awsErrorDetails() != null) {
                error.put("code", aws.awsErrorDetails().errorCode());
                error.put("errorMessage", aws.awsErrorDetails().errorMessage());
            }
        }
        if (t.getCause() != null) {
            error.put("cause", t.getCause().getClass().getName() + ": " + t.getCause().getMessage());
        }
        return error;
    }
}
