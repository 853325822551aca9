// Client.java - what a JVM application does by default: java.net.http.HttpClient with
// its default settings (HTTP/2 preferred, so plain http:// requests carry
// "Connection: Upgrade, HTTP2-Settings" and "Upgrade: h2c").
//
// Run with the single-file launcher (no build tool): java Client.java URL [N]
// Sends N (default 3) GETs to URL and one POST with a small JSON body, on one client,
// and prints one line per answer: "<status> <protocol> <body>". Exits 1 on an I/O error.
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class Client {
    public static void main(String[] args) throws Exception {
        URI uri = URI.create(args[0]);
        int n = args.length > 1 ? Integer.parseInt(args[1]) : 3;
        HttpClient client = HttpClient.newHttpClient();
        try {
            for (int i = 0; i < n + 1; i++) {
                HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10));
                if (i == n)
                    b.POST(HttpRequest.BodyPublishers.ofString("{\"n\":" + i + "}"))
                        .header("Content-Type", "application/json");
                HttpResponse<String> r =
                    client.send(b.build(), HttpResponse.BodyHandlers.ofString());
                System.out.println(r.statusCode() + " " + r.version() + " "
                                   + r.body().replace('\n', ' '));
            }
        } catch (java.io.IOException e) {
            System.out.println("error " + e);
            System.exit(1);
        }
    }
}
