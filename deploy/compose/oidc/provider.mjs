// The docker-compose demo's OIDC provider: panva's `oidc-provider` 9, the same library
// and version as the black-box tests' provider (tests/oidc, whose package.json and
// package-lock.json the compose service installs from). That one binds loopback and names
// itself http://127.0.0.1:PORT, which other containers cannot reach; this one listens on
// every interface and takes its issuer from OIDC_ISSUER. DEMO ONLY: plain http, fixed
// client secrets, no users. Use your organisation's provider in production.
//
// Clients (client-credentials grant, client_secret_basic), JWT access tokens with
// aud "portcullis" and a `groups` claim:
//   admin    / admin-secret      groups ["admin"]                 (cluster init, resources, policies)
//   agent    / agent-secret      groups ["engineers", "agents"]   (an AI agent)
//   approver / approver-secret   groups ["approvers"]             (approves held statements)
//
// Environment: OIDC_ISSUER (default http://oidc:9000), OIDC_PORT (default 9000),
// OIDC_JWKS_FILE (private signing keys; generated on first start if missing),
// OIDC_TOKEN_TTL (seconds, default 3600).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import Provider from 'oidc-provider';

const issuer = process.env.OIDC_ISSUER ?? 'http://oidc:9000';
const port = Number(process.env.OIDC_PORT ?? 9000);
const jwksFile = process.env.OIDC_JWKS_FILE;
const tokenTtl = Number(process.env.OIDC_TOKEN_TTL ?? 3600);

function genKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}

let jwks;
if (jwksFile && fs.existsSync(jwksFile)) {
  jwks = JSON.parse(fs.readFileSync(jwksFile, 'utf8'));
} else {
  jwks = { keys: [genKey(`k-${Date.now()}`)] };
  if (jwksFile) fs.writeFileSync(jwksFile, `${JSON.stringify(jwks)}\n`, { mode: 0o600 });
}

const clientGroups = {
  admin: ['admin'],
  agent: ['engineers', 'agents'],
  approver: ['approvers'],
};

const configuration = {
  clients: Object.keys(clientGroups).map((id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'openid groups',
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'groups'],
  claims: { openid: ['sub'], groups: ['groups'] },
  enabledJWA: { authorizationSigningAlgValues: ['ES256'], idTokenSigningAlgValues: ['ES256'] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  ttl: { ClientCredentials: tokenTtl, AccessToken: tokenTtl },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => 'urn:portcullis',
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'openid groups',
        audience: 'portcullis',
        accessTokenTTL: tokenTtl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  extraTokenClaims: async (_ctx, token) => {
    const groups = clientGroups[token.clientId];
    return groups ? { groups } : undefined;
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
const server = http.createServer(provider.callback());
server.listen(port, '0.0.0.0', () => console.log(`READY ${issuer} (listening on 0.0.0.0:${port})`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
