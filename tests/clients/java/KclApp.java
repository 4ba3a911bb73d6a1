import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.PrintStream;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.UUID;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.exceptions.KinesisClientLibException;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.processor.RecordProcessorCheckpointer;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.SingleStreamTracker;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

/**
 * A KCL 2.x application as most KCL users write one: a {@link Scheduler} built from {@link ConfigsBuilder}, reading a
 * stream from its start.
 *
 * <p>The Kinesis client is the SDK's KinesisAsyncClient with its defaults (CBOR through Netty over HTTP/2): only the
 * endpoint, the region and static credentials are set. The lease table is in the DynamoDB at the second endpoint.
 * Metrics go nowhere (no CloudWatch here). Short intervals make the KCL pick up leases and child shards within
 * seconds.
 *
 * <p>Arguments: the Kinesis endpoint, the DynamoDB endpoint, the stream, the application name (also the lease
 * table's and the fan-out consumer's), and the retrieval: "FANOUT" (the KCL's default, SubscribeToShard) or
 * "POLLING" (GetRecords).
 *
 * <p>Prints one JSON line per record on stdout ({"shard", "sequence", "key", "data"}, the data's bytes as Latin-1
 * characters); checkpoints after each batch and at a shard's end. The KCL logs to stderr.
 */
public final class KclApp {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    private KclApp() {}

    public static void main(String[] args) {
        URI kinesisEndpoint = URI.create(args[0]);
        URI dynamoDbEndpoint = URI.create(args[1]);
        String stream = args[2];
        String application = args[3];
        boolean polling = args[4].equals("POLLING");
        Region region = Region.US_EAST_1;
        StaticCredentialsProvider credentials =
                StaticCredentialsProvider.create(AwsBasicCredentials.create("AKIDEXAMPLE", "secret"));

        KinesisAsyncClient kinesis = KinesisAsyncClient.builder()
                .endpointOverride(kinesisEndpoint)
                .region(region)
                .credentialsProvider(credentials)
                .build();
        DynamoDbAsyncClient dynamoDb = DynamoDbAsyncClient.builder()
                .endpointOverride(dynamoDbEndpoint)
                .region(region)
                .credentialsProvider(credentials)
                .build();
        // ConfigsBuilder wants one; with the no-op metrics factory below nothing is ever sent through it.
        CloudWatchAsyncClient cloudWatch =
                CloudWatchAsyncClient.builder().region(region).credentialsProvider(credentials).build();

        InitialPositionInStreamExtended fromTheStart =
                InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.TRIM_HORIZON);
        ConfigsBuilder configs = new ConfigsBuilder(
                new SingleStreamTracker(stream, fromTheStart),
                application,
                kinesis,
                dynamoDb,
                cloudWatch,
                UUID.randomUUID().toString(),
                RecordPrinter::new);
        var retrieval = configs.retrievalConfig();
        if (polling) {
            retrieval.retrievalSpecificConfig(new PollingConfig(stream, kinesis).idleTimeBetweenReadsInMillis(200));
        }
        Scheduler scheduler = new Scheduler(
                configs.checkpointConfig(),
                configs.coordinatorConfig().parentShardPollIntervalMillis(500),
                configs.leaseManagementConfig().shardSyncIntervalMillis(1000).failoverTimeMillis(3000),
                configs.lifecycleConfig(),
                configs.metricsConfig().metricsFactory(new NullMetricsFactory()),
                configs.processorConfig(),
                retrieval);
        scheduler.run();
    }

    /** One shard's processor: prints its records, checkpoints after each batch and at the shard's end. */
    private static final class RecordPrinter implements ShardRecordProcessor {
        private String shard = "";

        @Override
        public void initialize(InitializationInput input) {
            shard = input.shardId();
        }

        @Override
        public void processRecords(ProcessRecordsInput input) {
            StringBuilder lines = new StringBuilder();
            for (KinesisClientRecord record : input.records()) {
                ByteBuffer data = record.data().duplicate();
                byte[] bytes = new byte[data.remaining()];
                data.get(bytes);
                ObjectNode line = JSON.createObjectNode()
                        .put("shard", shard)
                        .put("sequence", record.sequenceNumber())
                        .put("key", record.partitionKey())
                        .put("data", new String(bytes, StandardCharsets.ISO_8859_1));
                lines.append(line.toString()).append('\n');
            }
            if (lines.length() > 0) {
                // One print per batch: the processors of several shards share stdout.
                OUT.print(lines);
                OUT.flush();
            }
            checkpoint(input.checkpointer());
        }

        @Override
        public void leaseLost(LeaseLostInput input) {}

        @Override
        public void shardEnded(ShardEndedInput input) {
            checkpoint(input.checkpointer());
        }

        @Override
        public void shutdownRequested(ShutdownRequestedInput input) {
            checkpoint(input.checkpointer());
        }

        private static void checkpoint(RecordProcessorCheckpointer checkpointer) {
            try {
                checkpointer.checkpoint();
            } catch (KinesisClientLibException e) {
                throw new IllegalStateException("checkpoint failed", e);
            }
        }
    }
}
