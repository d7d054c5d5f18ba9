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
//   OIDC_DEVICE_INTERVAL  if set, the device authorization response carries this polling
//                     `interval` (seconds); oidc-provider omits it (clients then wait 5 s)
//   OIDC_DEVICE_SLOW_DOWN  if set to N, the first N device-code polls of each device code are
//                     answered `slow_down` (to exercise client back-off)
//
// Clients (client-credentials grant, client_secret_basic or client_secret_post):
//   agent  / agent-secret    tokens carry groups ["engineers","agents"]
//   agent2 / agent2-secret   tokens carry groups ["agents"]
// Device authorization grant (RFC 8628; endpoint /device/auth, user page /device):
//   cli                      public client (no secret)
//   cli2   / cli2-secret     confidential client (client_secret_basic)
//   The human part uses oidc-provider's devInteractions: GET /device gives a form with an
//   `xsrf` field; POST /device xsrf,user_code,confirm=yes (or abort=yes to deny) leads to
//   /interaction/<uid>: a login form (POST prompt=login, login=<sub>, password=<any>), then
//   a consent form (POST prompt=consent); /interaction/<uid>/abort denies.
// Authorization code with PKCE (the web console; devInteractions login and consent):
//   console                  public client (no secret, PKCE S256), redirect URIs from
//                            OIDC_CONSOLE_REDIRECTS (comma-separated); absent when unset
// Resources (RFC 8707 resource indicators; JWT access tokens, RFC 9068):
//   urn:portcullis  (the default when none is requested) -> aud "portcullis"
//   urn:other                                            -> aud "other" (wrong-audience tests)
// Accounts: findAccount knows "alice" (groups ["engineers"]) and "bob" (["approvers"])
// for ID-token/userinfo claims;
// access tokens issued to an account (device flow) carry that account's groups.
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
const deviceInterval = process.env.OIDC_DEVICE_INTERVAL ? Number(process.env.OIDC_DEVICE_INTERVAL) : undefined;
const deviceSlowDown = Number(process.env.OIDC_DEVICE_SLOW_DOWN ?? 0);

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
  bob: { groups: ['approvers'], email: 'bob@example.test' },
};

const consoleRedirects = (process.env.OIDC_CONSOLE_REDIRECTS ?? '').split(',').filter(Boolean);
const consoleClient = {
  client_id: 'console',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: consoleRedirects,
  scope: 'openid groups email',
  token_endpoint_auth_method: 'none',
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

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const deviceClient = (id, secret) => ({
  client_id: id,
  ...(secret ? { client_secret: secret } : {}),
  grant_types: [DEVICE_CODE_GRANT],
  response_types: [],
  redirect_uris: [],
  scope: 'openid groups',
  token_endpoint_auth_method: secret ? 'client_secret_basic' : 'none',
});

const configuration = {
  clients: [
    ccClient('agent'),
    { ...ccClient('agent2'), token_endpoint_auth_method: 'client_secret_post' },
    deviceClient('cli'),
    deviceClient('cli2', 'cli2-secret'),
    ...(consoleRedirects.length > 0 ? [consoleClient] : []),
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
    // Simple login/consent forms (any password), for the device flow's human part.
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
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
  // Test knobs for the device flow (see OIDC_DEVICE_* above).
  const slowDownCounts = new Map();
  provider.use(async (ctx, next) => {
    if (
      deviceSlowDown > 0 && ctx.method === 'POST' && ctx.path === '/token'
      && ctx.is('application/x-www-form-urlencoded')
    ) {
      const chunks = [];
      for await (const c of ctx.req) chunks.push(c);
      const body = Buffer.concat(chunks).toString('utf8');
      const params = new URLSearchParams(body);
      const code = params.get('device_code');
      const seen = code ? (slowDownCounts.get(code) ?? 0) : deviceSlowDown;
      if (params.get('grant_type') === DEVICE_CODE_GRANT && seen < deviceSlowDown) {
        slowDownCounts.set(code, seen + 1);
        ctx.status = 400;
        ctx.body = { error: 'slow_down', error_description: 'test knob: polling too quickly' };
        return;
      }
      // The stream is consumed: oidc-provider falls back to an already parsed req.body.
      ctx.req.body = body;
    }
    await next();
    if (deviceInterval !== undefined && ctx.method === 'POST' && ctx.path === '/device/auth'
      && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      ctx.body = { ...ctx.body, interval: deviceInterval };
    }
  });
  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
