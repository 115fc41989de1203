"""An HTTPS-proxy client as a Python program writes one: urllib3's
ProxyManager with an https:// proxy URL (TLS to the proxy, then CONNECT
and TLS to the origin inside it), optionally with a client certificate.

Usage: https_proxy_client.py PROXY_URL PROXY_CA CLIENT_CERT CLIENT_KEY ORIGIN_CA URL...
CLIENT_CERT and CLIENT_KEY may be "" (no client certificate). Prints one
line per URL: the status and body, or ERROR and the exception.
"""
import ssl
import sys
import tempfile

import urllib3

proxy, proxy_ca, cert, key, origin_ca, *urls = sys.argv[1:]
ctx = ssl.create_default_context(cafile=proxy_ca)
if cert:
    ctx.load_cert_chain(cert, key)
# For an http:// URL urllib3 forwards the request to the proxy over a pool
# that verifies the proxy with ca_certs, not with proxy_ssl_context: the
# bundle holds the proxy's CA too.
bundle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
for f in (origin_ca, proxy_ca):
    with open(f) as src:
        bundle.write(src.read())
bundle.close()
pm = urllib3.ProxyManager(proxy, proxy_ssl_context=ctx, ca_certs=bundle.name,
                          cert_reqs="CERT_REQUIRED", retries=False, timeout=10)
for url in urls:
    try:
        r = pm.request("GET", url)
        print(r.status, r.data.decode())
    except Exception as e:  # the line says what failed; the test decides
        print("ERROR", " ".join(repr(e).split()))
    sys.stdout.flush()
