package portal.testbed;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

/**
 * A single Elasticsearch 8 node for the testbed, run from Maven Central's jars rather than a distribution.
 *
 * <p>Usage: {@code java --module-path lib --add-modules ALL-MODULE-PATH -cp launcher.jar
 * portal.testbed.ElasticsearchNode HOME [key=value ...]}; the {@code modules/} folder beside launcher.jar holds the
 * plugins. As the OpenSearch launcher:
 * HOME holds config/, data/ and logs/, each key=value is a node setting, the node listens on 127.0.0.1 only, forms a
 * cluster of one, writes the ports it bound to logs/http.ports and stops cleanly on SIGTERM.
 *
 * <p>Elasticsearch 8's Node takes no list of plugin classes (only the test framework's MockNode, in Node's own
 * package, can): plugins come from a PluginsLoader over module folders, as in the distribution. The distribution's
 * entitlement agent and bootstrap checks belong to its Elasticsearch main class, which this launcher replaces.
 */
public final class ElasticsearchNode {

    private ElasticsearchNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: ElasticsearchNode HOME [setting=value ...]");
            System.exit(64);
        }
        LogConfigurator.configureESLogging(); // before anything logs: the server's logging API has no default
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
        LogConfigurator.configure(environment, true);

        PluginsLoader plugins = PluginsLoader.createPluginsLoader(
            PluginsLoader.loadModulesBundles(modulesOfThisBuild()), Set.of(), Map.of());
        Node node = new Node(environment, plugins);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(10, TimeUnit.SECONDS);
            } catch (IOException | InterruptedException e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "testbed-shutdown"));
        node.start();
        // The node's threads are daemons: this one keeps the JVM alive until the shutdown hook has closed it.
        stopped.await();
    }

    /** The modules/ folder beside launcher.jar. */
    private static Path modulesOfThisBuild() throws Exception {
        Path jar = Paths.get(ElasticsearchNode.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        return jar.getParent().resolve("modules");
    }

    /** Elasticsearch will not start without a log4j2.properties in its config folder: ours sends all to the console. */
    private static void writeLoggingConfig(Path config) throws IOException {
        Files.createDirectories(config);
        Path target = config.resolve("log4j2.properties");
        if (Files.exists(target)) {
            return;
        }
        try (InputStream in = ElasticsearchNode.class.getResourceAsStream("log4j2.properties")) {
            Files.copy(in, target);
        }
    }
}
