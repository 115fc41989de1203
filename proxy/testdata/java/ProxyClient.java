import java.io.FileInputStream;
import java.net.Authenticator;
import java.net.InetSocketAddress;
import java.net.PasswordAuthentication;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

// ProxyClient fetches each URL through an HTTP proxy with the JDK's standard
// HttpClient and Basic proxy credentials, trusting only the CA in CA_PEM. It
// prints one line per URL: "STATUS body", or "ERROR message" when the
// request fails (a refused CONNECT is an IOException in this client).
//
// Usage: java ProxyClient.java PROXY_HOST PROXY_PORT USER PASSWORD CA_PEM URL...
//
// Basic over a CONNECT tunnel needs -Djdk.http.auth.tunneling.disabledSchemes=
// (the JDK disables it by default).
public class ProxyClient {
    public static void main(String[] a) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (FileInputStream in = new FileInputStream(a[4])) {
            ks.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ssl = SSLContext.getInstance("TLS");
        ssl.init(null, tmf.getTrustManagers(), null);
        String user = a[2], password = a[3];
        HttpClient client = HttpClient.newBuilder()
            .proxy(ProxySelector.of(new InetSocketAddress(a[0], Integer.parseInt(a[1]))))
            .authenticator(new Authenticator() {
                @Override
                protected PasswordAuthentication getPasswordAuthentication() {
                    return new PasswordAuthentication(user, password.toCharArray());
                }
            })
            .sslContext(ssl)
            .connectTimeout(Duration.ofSeconds(10))
            .build();
        for (int i = 5; i < a.length; i++) {
            HttpRequest req = HttpRequest.newBuilder(URI.create(a[i])).timeout(Duration.ofSeconds(10)).build();
            try {
                HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
                System.out.println(resp.statusCode() + " " + resp.body());
            } catch (java.io.IOException e) {
                System.out.println("ERROR " + e.getMessage());
            }
        }
    }
}
