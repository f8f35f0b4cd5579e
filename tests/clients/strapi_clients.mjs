// The client libraries Strapi front ends use, driven against a real tokenledger (started by
// tests/api/real_clients.rs, whose address is API_ORIGIN): strapi-sdk-js, refine's
// @refinedev/strapi-v4 AuthHelper (with the axios its apps use beside it) and @strapi/client.
// Each registers, logs in, reads /users/me, changes its password, logs out, and then meets
// a request without a token (Strapi: 403 ForbiddenError "Forbidden") and one with a bad
// token (401 UnauthorizedError), which clients branch on. Exits non-zero at the first
// broken expectation, saying which library and step.

import assert from 'node:assert/strict';

import Strapi from 'strapi-sdk-js';
import { AuthHelper } from '@refinedev/strapi-v4';
import axios from 'axios';
import { strapi, HTTPAuthorizationError, HTTPForbiddenError } from '@strapi/client';

const origin = process.env.API_ORIGIN;
assert.ok(origin, 'API_ORIGIN is not set');
const api = `${origin}/api`;
const run = process.env.RUN_LABEL ?? 'default';
const PASSWORD = 'correct horse 1';
const NEW_PASSWORD = 'battery staple 2';

let step = '';
const say = (library, what) => {
  step = `${library}: ${what}`;
  console.log(`[${run}] ${step}`);
};

/** Strapi's error body, as clients read it. */
const assertStrapiError = (body, status, name, message) => {
  assert.equal(body?.data, null, JSON.stringify(body));
  assert.equal(body?.error?.status, status, JSON.stringify(body));
  assert.equal(body?.error?.name, name, JSON.stringify(body));
  if (message !== undefined) {
    assert.equal(body?.error?.message, message, JSON.stringify(body));
  }
};

/** No token: Strapi's public role lacks `users.me`, so 403 ForbiddenError "Forbidden". */
const assertNoToken = (body) => assertStrapiError(body, 403, 'ForbiddenError', 'Forbidden');
/** A token Strapi cannot verify: 401 UnauthorizedError. */
const assertBadToken = (body) => assertStrapiError(body, 401, 'UnauthorizedError');

const user = (name) => ({ username: name, email: `${name}@example.com`, password: PASSWORD });
const changeTo = { currentPassword: PASSWORD, password: NEW_PASSWORD, passwordConfirmation: NEW_PASSWORD };

// strapi-sdk-js keeps its token in the browser's storage only: this is that storage.
const storage = new Map();
globalThis.window = {
  localStorage: {
    getItem: (key) => (storage.has(key) ? storage.get(key) : null),
    setItem: (key, value) => storage.set(key, String(value)),
    removeItem: (key) => storage.delete(key),
  },
};

async function strapiSdkJs() {
  const library = 'strapi-sdk-js';
  const sdk = new Strapi({ url: origin, prefix: '/api', store: { key: 'strapi_jwt', useLocalStorage: true } });
  say(library, 'register');
  const registered = await sdk.register(user('sdkuser'));
  assert.equal(registered.user.username, 'sdkuser');
  assert.equal(sdk.getToken(), registered.jwt);
  say(library, 'login');
  const { jwt, user: loggedIn } = await sdk.login({ identifier: 'sdkuser@example.com', password: PASSWORD });
  assert.equal(loggedIn.id, registered.user.id);
  assert.equal(sdk.getToken(), jwt);
  say(library, 'fetchUser');
  const me = await sdk.fetchUser();
  assert.equal(me?.email, 'sdkuser@example.com');
  assert.equal(me?.documentId, registered.user.documentId);
  say(library, 'changePassword');
  const changed = await sdk.changePassword(changeTo);
  assert.notEqual(changed.jwt, jwt);
  assert.equal(sdk.getToken(), changed.jwt);
  assert.equal((await sdk.fetchUser())?.id, registered.user.id, 'the new token reads /users/me');
  sdk.setToken(jwt);
  assert.equal(await sdk.fetchUser(), null, 'the token from before the change is refused');
  say(library, 'login with the new password, then logout');
  await sdk.login({ identifier: 'sdkuser', password: NEW_PASSWORD });
  const loggedOut = await sdk.request('post', '/auth/logout', { data: {} });
  assert.deepEqual(loggedOut, { ok: true });
  sdk.logout();
  assert.equal(sdk.getToken(), null);
  assert.equal(await sdk.fetchUser(), null);
  say(library, 'a forgotten token (403) and a bad one (401)');
  const noToken = await sdk.request('get', '/users/me').then(
    (answer) => assert.fail(`answered ${JSON.stringify(answer)}`),
    (error) => error,
  );
  assertNoToken(noToken);
  sdk.setToken('not-a-jwt');
  const badToken = await sdk.request('get', '/users/me').then(
    (answer) => assert.fail(`answered ${JSON.stringify(answer)}`),
    (error) => error,
  );
  assertBadToken(badToken);
  sdk.logout();
}

async function refineStrapiV4() {
  const library = '@refinedev/strapi-v4';
  const helper = AuthHelper(api);
  // A refine app's own axios instance: its authProvider sets the bearer after login.
  const http = axios.create();
  say(library, 'register');
  const registered = (await http.post(`${api}/auth/local/register`, user('refineuser'))).data;
  assert.equal(registered.user.username, 'refineuser');
  say(library, 'AuthHelper.login');
  const { data } = await helper.login('refineuser', PASSWORD);
  assert.equal(data.user.id, registered.user.id);
  http.defaults.headers.common.Authorization = `Bearer ${data.jwt}`;
  say(library, 'AuthHelper.me');
  const me = await helper.me(data.jwt);
  assert.equal(me.status, 200);
  assert.equal(me.data.email, 'refineuser@example.com');
  say(library, 'change password');
  const changed = (await http.post(`${api}/auth/change-password`, changeTo)).data;
  assert.equal(changed.user.id, registered.user.id);
  const stale = await helper.me(data.jwt).then(
    (answer) => assert.fail(`answered ${answer.status}`),
    (error) => error.response,
  );
  assertStrapiError(stale.data, 401, 'UnauthorizedError');
  http.defaults.headers.common.Authorization = `Bearer ${changed.jwt}`;
  assert.equal((await helper.me(changed.jwt)).data.id, registered.user.id);
  say(library, 'logout');
  assert.deepEqual((await http.post(`${api}/auth/logout`, {})).data, { ok: true });
  delete http.defaults.headers.common.Authorization;
  say(library, 'a forgotten token (403) and a bad one (401)');
  const noToken = await http.get(`${api}/users/me`).then(
    (answer) => assert.fail(`answered ${answer.status}`),
    (error) => error.response,
  );
  assertNoToken(noToken.data);
  const badToken = await helper.me('not-a-jwt').then(
    (answer) => assert.fail(`answered ${answer.status}`),
    (error) => error.response,
  );
  assertBadToken(badToken.data);
}

async function strapiClient() {
  const library = '@strapi/client';
  const anonymous = strapi({ baseURL: api });
  // With the content type the library's own users-permissions login sends: a string body
  // alone goes out as text/plain, which Strapi does not read as JSON either.
  const json = { 'Content-Type': 'application/json' };
  const post = (client, path, body) =>
    client.fetch(path, { method: 'POST', headers: json, body: JSON.stringify(body) }).then((r) => r.json());
  say(library, 'register');
  const registered = await post(anonymous, '/auth/local/register', user('clientuser'));
  assert.equal(registered.user.username, 'clientuser');
  say(library, 'login');
  const login = await post(anonymous, '/auth/local', { identifier: 'clientuser', password: PASSWORD });
  say(library, 'me');
  const client = strapi({ baseURL: api, auth: login.jwt });
  const me = await client.fetch('/users/me').then((r) => r.json());
  assert.equal(me.id, registered.user.id);
  say(library, 'change password');
  const changed = await post(client, '/auth/change-password', changeTo);
  await assert.rejects(client.fetch('/users/me'), HTTPAuthorizationError, 'the token before the change');
  const renewed = strapi({ baseURL: api, auth: changed.jwt });
  assert.equal((await renewed.fetch('/users/me').then((r) => r.json())).email, 'clientuser@example.com');
  say(library, 'logout');
  assert.deepEqual(await post(renewed, '/auth/logout', {}), { ok: true });
  await assert.rejects(renewed.fetch('/users/me'), HTTPAuthorizationError, 'a logged-out token');
  say(library, 'a forgotten token (403) and a bad one (401)');
  const noToken = await anonymous.fetch('/users/me').then(
    (answer) => assert.fail(`answered ${answer.status}`),
    (error) => error,
  );
  assert.ok(noToken instanceof HTTPForbiddenError, `${noToken.name}: ${noToken.message}`);
  assertNoToken(await noToken.response.json());
  const bad = strapi({ baseURL: api, auth: 'not-a-jwt' });
  const badToken = await bad.fetch('/users/me').then(
    (answer) => assert.fail(`answered ${answer.status}`),
    (error) => error,
  );
  assert.ok(badToken instanceof HTTPAuthorizationError, `${badToken.name}: ${badToken.message}`);
  assertBadToken(await badToken.response.json());
}

try {
  await strapiSdkJs();
  await refineStrapiV4();
  await strapiClient();
  console.log(`[${run}] all three clients passed`);
} catch (error) {
  const detail = error?.error ? JSON.stringify(error) : error?.stack ?? String(error);
  console.error(`[${run}] FAILED at ${step}\n${detail}`);
  process.exit(1);
}
