// The peer for `make bench`: panva's oidc-provider (version pinned in package.json) issuing the same token
// shape as the service: client_credentials, an RS256-signed JWT access token (RSA-2048) encrypted to the
// audience as a nested JWE (RSA-OAEP-256 / A256GCM, the audience's public key). Its production command is
// `NODE_ENV=production node server.js`: one Node.js process, the default (in-memory) adapter; JWT access
// tokens are not stored by oidc-provider, so no write happens per token.
//
// Settings from the environment (bench/bench_server.py sets them):
//   PEER_PORT, PEER_ISSUER, PEER_AUDIENCE, PEER_SCOPE, PEER_CLIENT_ID, PEER_CLIENT_SECRET,
//   PEER_AUDIENCE_PUBLIC_KEY (path to the audience's RSA public key, PEM)
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`peer: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const audience = env('PEER_AUDIENCE');
const scope = env('PEER_SCOPE');
const audienceKey = createPublicKey(readFileSync(env('PEER_AUDIENCE_PUBLIC_KEY')));
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(env('PEER_ISSUER'), {
  clients: [{
    client_id: env('PEER_CLIENT_ID'),
    client_secret: env('PEER_CLIENT_SECRET'),
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
  }],
  jwks: { keys: [signingJwk] },
  scopes: [scope],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope,
        audience,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: {
          sign: { alg: 'RS256' },
          encrypt: { alg: 'RSA-OAEP-256', enc: 'A256GCM', key: audienceKey },
        },
      }),
    },
  },
});

const server = provider.listen(Number(env('PEER_PORT')), '127.0.0.1', () => {
  console.log(`peer: oidc-provider listening on 127.0.0.1:${env('PEER_PORT')}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
