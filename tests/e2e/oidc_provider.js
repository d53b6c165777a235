// A small OpenID provider for jwt-headers' end-to-end test, built on the npm package
// `oidc-provider` (version pinned in package.json). It listens on 127.0.0.1 only.
//
// Why each piece is here:
// - Two clients: `jwt-headers-apache` (authorization code, what mod_auth_openidc uses to log a
//   browser in) and `jwt-headers-robot` (client credentials, a machine calling the API with
//   `Authorization: Bearer`).
// - oidc-provider issues JWT access tokens only for a resource indicator (RFC 8707); the resource
//   becomes the token's `aud`. The Apache client gets our API as its default resource, so the
//   `OIDC_access_token` mod_auth_openidc passes on is a JWT as Keycloak's would be; the robot asks
//   for it with `resource=`.
// - oidc-provider's own userinfo endpoint refuses access tokens issued for a resource server, but
//   both mod_auth_openidc (at login) and jwt-headers (`validate_userinfo`) call userinfo with exactly
//   those tokens. So this script answers the userinfo route itself for the JWTs it signed, like
//   Keycloak does, and hands any other token to the provider.
// - The development login form accepts any user name and any password; the user name becomes the
//   account id. `alice` holds the role `GeoserverAdministrator` (what the samples' role_converter
//   maps), everyone holds `viewer`.
// - The signing key comes from E2E_OIDC_JWKS_FILE when given (the test generates it, so it can sign
//   an expired token with the provider's own key); otherwise one is generated at start-up.
//
// Environment:
//   E2E_OIDC_PORT              port to listen on (127.0.0.1), required
//   E2E_APACHE_CLIENT_SECRET   secret of jwt-headers-apache, required
//   E2E_ROBOT_CLIENT_SECRET    secret of jwt-headers-robot, required
//   E2E_APACHE_REDIRECT_URIS   comma-separated redirect URIs registered for jwt-headers-apache
//   E2E_API_AUDIENCE           resource indicator of the API (default urn:jwt-headers:e2e-api)
//   E2E_OIDC_JWKS_FILE         private JWKS (JSON) to sign with (optional)
//
// Logs one line per request (method, path, status; never a token) on stdout, and prints
// "listening <issuer>" once it accepts connections.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`oidc_provider.js: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(required('E2E_OIDC_PORT'), 10);
const issuer = `http://${HOST}:${port}`;
const apiAudience = process.env.E2E_API_AUDIENCE || 'urn:jwt-headers:e2e-api';
const redirectUris = (process.env.E2E_APACHE_REDIRECT_URIS || '')
  .split(',')
  .map((uri) => uri.trim())
  .filter(Boolean);
const ROBOT_ID = 'jwt-headers-robot';
const TOKEN_TTL = 300;

async function signingKeys() {
  const file = process.env.E2E_OIDC_JWKS_FILE;
  if (file) {
    return JSON.parse(readFileSync(file, 'utf8'));
  }
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { keys: [{ ...jwk, kid: `e2e-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' }] };
}

/** The claims an account (a person, or the robot's service account) has. */
function accountClaims(accountId) {
  if (accountId === ROBOT_ID) {
    return {
      sub: accountId,
      preferred_username: `service-account-${ROBOT_ID}`,
      realm_access: { roles: ['api-reader'] },
    };
  }
  const roles = accountId === 'alice' ? ['GeoserverAdministrator', 'viewer'] : ['viewer'];
  return {
    sub: accountId,
    preferred_username: accountId,
    name: `${accountId} (e2e)`,
    realm_access: { roles },
  };
}

const jwks = await signingKeys();
const publicKeys = jose.createLocalJWKSet({
  keys: jwks.keys.map(({ d, p, q, dp, dq, qi, key_ops, ...pub }) => pub),
});

const configuration = {
  jwks,
  clients: [
    {
      client_id: 'jwt-headers-apache',
      client_secret: required('E2E_APACHE_CLIENT_SECRET'),
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: ROBOT_ID,
      client_secret: required('E2E_ROBOT_CLIENT_SECRET'),
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'realm_access'],
  },
  // Put the profile claims in the ID token too (Keycloak does): mod_auth_openidc passes the ID
  // token's payload on as OIDC_id_token_payload, which is what the app reads.
  conformIdTokenClaims: false,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return accountClaims(sub);
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: false },
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf;
        return client.clientId === 'jwt-headers-apache' ? apiAudience : undefined;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== apiAudience) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'api',
          audience: apiAudience,
          accessTokenTTL: TOKEN_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    // The user's name and roles inside the JWT access token, as Keycloak puts them there.
    const { preferred_username, realm_access } = accountClaims(token.accountId ?? token.clientId);
    return { preferred_username, realm_access };
  },
  ttl: {
    AccessToken: TOKEN_TTL,
    ClientCredentials: TOKEN_TTL,
    IdToken: TOKEN_TTL,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
};

const provider = new Provider(issuer, configuration);
const userinfoPath = '/me';

// One log line per request: enough to see who called what, never a token or a body.
provider.use(async (ctx, next) => {
  await next();
  console.log(`${ctx.method} ${ctx.path} ${ctx.status}`);
});

// Userinfo for the JWT access tokens this provider signed (see the header comment).
provider.use(async (ctx, next) => {
  if (ctx.path !== userinfoPath || !['GET', 'POST'].includes(ctx.method)) {
    return next();
  }
  const match = /^Bearer +(\S+)$/i.exec(ctx.get('authorization'));
  if (!match || match[1].split('.').length !== 3) {
    return next(); // an opaque token: the provider's own userinfo knows it
  }
  try {
    const { payload } = await jose.jwtVerify(match[1], publicKeys, {
      issuer,
      algorithms: ['RS256'],
      typ: 'at+jwt',
    });
    ctx.set('Cache-Control', 'no-store');
    ctx.body = accountClaims(payload.sub);
  } catch {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
    ctx.body = { error: 'invalid_token' };
  }
  return undefined;
});

provider.on('server_error', (ctx, err) => console.error(`server_error ${err.message}`));

const server = provider.listen(port, HOST, () => {
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
