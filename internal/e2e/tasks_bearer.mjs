// tasks.mjs with a bearer token on every HTTP request it makes (POST,
// the session's GET stream, DELETE): the token is AIRLOCK_E2E_TOKEN. Same
// plan and output as tasks.mjs; for airlock serve with auth.mode oidc.
const token = process.env.AIRLOCK_E2E_TOKEN;
if (!token) {
  throw new Error("AIRLOCK_E2E_TOKEN is not set");
}
const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const headers = new Headers(init.headers ?? {});
  headers.set("Authorization", `Bearer ${token}`);
  return plainFetch(input, { ...init, headers });
};
await import("./tasks.mjs");
