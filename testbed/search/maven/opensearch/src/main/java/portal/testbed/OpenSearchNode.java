package portal.testbed;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single OpenSearch node for the testbed, run from the jars on the class path rather than a distribution.
 *
 * <p>Usage: {@code java -cp launcher.jar:lib/* portal.testbed.OpenSearchNode HOME [key=value ...]}. HOME holds
 * config/, data/ and logs/; each key=value is a node setting and overrides the defaults below. The node listens on
 * 127.0.0.1 only, forms a cluster of one and writes the ports it bound to logs/http.ports and logs/transport.ports.
 * It stops cleanly on SIGTERM.
 */
public final class OpenSearchNode extends Node {

    /** The distribution's modules we need, loaded from the class path as the test framework's MockNode does. */
    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class, CommonAnalysisPlugin.class, PainlessPlugin.class);

    private OpenSearchNode(Environment environment) {
        super(environment, PLUGINS, true);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: OpenSearchNode HOME [setting=value ...]");
            System.exit(64);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Settings.Builder settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "portal-testbed")
            .put("node.name", "testbed")
            // One node, bound to loopback: no discovery, and no bootstrap checks (those are for production nodes).
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", "0")
            .put("transport.port", "0")
            .put("node.portsfile", true)
            // A nearly full disk must not turn the test indices read-only or leave their shards unassigned.
            .put("cluster.routing.allocation.disk.threshold_enabled", false);
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not a setting=value pair: " + args[i]);
                System.exit(64);
            }
            settings.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        Path config = home.resolve("config");
        writeLoggingConfig(config);
        Files.createDirectories(home.resolve("logs")); // the node writes its ports files there but does not create it

        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings.build(), Collections.emptyMap(), config, () -> "testbed");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment);

        Node node = new OpenSearchNode(environment);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(10, TimeUnit.SECONDS);
            } catch (IOException | InterruptedException e) {
                LogManager.getLogger(OpenSearchNode.class).warn("closing the node failed", e);
            } finally {
                stopped.countDown();
            }
        }, "testbed-shutdown"));
        node.start();
        // The node's threads are daemons: this one keeps the JVM alive until the shutdown hook has closed it.
        stopped.await();
    }

    /** OpenSearch refuses to start without a log4j2.properties in its config folder: ours sends all to the console. */
    private static void writeLoggingConfig(Path config) throws IOException {
        Files.createDirectories(config);
        Path target = config.resolve("log4j2.properties");
        if (Files.exists(target)) {
            return;
        }
        try (InputStream in = OpenSearchNode.class.getResourceAsStream("log4j2.properties")) {
            Files.copy(in, target);
        }
    }
}
