// A real third-party OIDC provider (panva's `oidc-provider`, major 9) for Portcullis
// black-box tests. Plain http on loopback only; never use this configuration anywhere else.
//
// Usage:
//   node provider.mjs gen-key <kid>          print one private ES256 JWK with that kid
//   node provider.mjs [port]                 run the provider (port also from OIDC_PORT)
//
// Environment:
//   OIDC_PORT         port to listen on (127.0.0.1); argv[2] wins; default 0 (any)
//   OIDC_JWKS_FILE    JWKS of *private* signing keys, {"keys":[...]}; the first key signs
//                     new tokens, all of them are published at /jwks. If the file does not
//                     exist, one key (kid "k1") is generated and written there.
//   OIDC_TOKEN_TTL    lifetime of client-credentials access tokens in seconds (default 600)
//
// Clients (client-credentials grant, client_secret_basic or client_secret_post):
//   agent  / agent-secret    tokens carry groups ["engineers","agents"]
//   agent2 / agent2-secret   tokens carry groups ["agents"]
// Resources (RFC 8707 resource indicators; JWT access tokens, RFC 9068):
//   urn:portcullis  (the default when none is requested) -> aud "portcullis"
//   urn:other                                            -> aud "other" (wrong-audience tests)
// Account: findAccount knows "alice" (groups ["engineers"]) for ID-token/userinfo claims.
//
// On listening it prints exactly one line on stdout: `READY <issuer>`.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

function genKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}

if (process.argv[2] === 'gen-key') {
  const kid = process.argv[3];
  if (!kid) {
    console.error('usage: node provider.mjs gen-key <kid>');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(genKey(kid))}\n`);
  process.exit(0);
}

// Imported only when serving, so `gen-key` works without node_modules.
const { default: Provider, errors } = await import('oidc-provider');

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const jwksFile = process.env.OIDC_JWKS_FILE;
const tokenTtl = Number(process.env.OIDC_TOKEN_TTL ?? 600);

let jwks;
if (jwksFile && fs.existsSync(jwksFile)) {
  jwks = JSON.parse(fs.readFileSync(jwksFile, 'utf8'));
} else {
  jwks = { keys: [genKey('k1')] };
  if (jwksFile) fs.writeFileSync(jwksFile, `${JSON.stringify(jwks)}\n`, { mode: 0o600 });
}
if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
  console.error('OIDC_JWKS_FILE must hold {"keys":[...]} with at least one private JWK');
  process.exit(2);
}
// Everything here is ES256 (P-256); the first key is the one selectForSign picks.
const signingAlg = jwks.keys[0].alg ?? 'ES256';

const clientGroups = {
  agent: ['engineers', 'agents'],
  agent2: ['agents'],
};
const accounts = {
  alice: { groups: ['engineers'], email: 'alice@example.test' },
};

const resources = {
  'urn:portcullis': 'portcullis',
  'urn:other': 'other',
};

const ccClient = (id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'openid groups',
  token_endpoint_auth_method: 'client_secret_basic',
});

const configuration = {
  clients: [
    ccClient('agent'),
    { ...ccClient('agent2'), token_endpoint_auth_method: 'client_secret_post' },
  ],
  jwks,
  cookies: { keys: ['portcullis-test-cookie-key-not-secret'] },
  scopes: ['openid', 'offline_access', 'groups'],
  claims: { openid: ['sub'], groups: ['groups'], email: ['email'] },
  enabledJWA: { authorizationSigningAlgValues: [signingAlg], idTokenSigningAlgValues: [signingAlg] },
  clientDefaults: { id_token_signed_response_alg: signingAlg },
  ttl: {
    ClientCredentials: tokenTtl,
    AccessToken: tokenTtl,
    IdToken: 3600,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
  },
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? 'urn:portcullis',
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const audience = resources[resourceIndicator];
        if (!audience) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        return {
          scope: 'openid groups',
          audience,
          accessTokenTTL: tokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: signingAlg } },
        };
      },
    },
  },
  // Adds claims to JWT access tokens (and to introspection responses).
  extraTokenClaims: async (_ctx, token) => {
    const groups = token.accountId ? accounts[token.accountId]?.groups : clientGroups[token.clientId];
    return groups ? { groups } : undefined;
  },
  findAccount: async (_ctx, sub) => {
    const account = accounts[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      claims: async () => ({ sub, ...account }),
    };
  },
};

// Listen first (to learn the port when 0), then mount the provider with the right issuer.
const http = await import('node:http');
const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  // Direct loopback http, no reverse proxy: the issuer is taken from the constructor, and
  // X-Forwarded-* headers must not be trusted.
  provider.proxy = false;
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
