// An HTTPS-proxy client as a Node program writes one: undici's ProxyAgent
// with an https:// proxy URL (TLS to the proxy, then CONNECT and TLS to
// the origin inside it), optionally with a client certificate.
//
// Usage: node https_proxy_client.mjs PROXY_URL PROXY_CA CLIENT_CERT CLIENT_KEY ORIGIN_CA URL...
// CLIENT_CERT and CLIENT_KEY may be "" (no client certificate). Prints one
// line per URL: the status and body, or ERROR and the message.
import { readFileSync } from 'node:fs';
import { ProxyAgent, request } from 'undici';

const [proxy, proxyCA, cert, key, originCA, ...urls] = process.argv.slice(2);
const proxyTls = { ca: readFileSync(proxyCA) };
if (cert) {
  proxyTls.cert = readFileSync(cert);
  proxyTls.key = readFileSync(key);
}
const agent = new ProxyAgent({ uri: proxy, proxyTls, requestTls: { ca: readFileSync(originCA) } });
for (const url of urls) {
  try {
    const res = await request(url, { dispatcher: agent });
    console.log(res.statusCode, await res.body.text());
  } catch (e) {
    console.log('ERROR', String(e.message).replace(/\s+/g, ' '));
  }
}
await agent.close();
