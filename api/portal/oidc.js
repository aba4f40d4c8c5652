// Sign-in through the organisation's OIDC provider: the authorization-code flow with PKCE
// (S256) for a public client. The code verifier, state and nonce live in sessionStorage only
// for the round trip to the provider and are deleted as soon as the browser is back.
const PENDING_SLOT = "enclave.oidc.pending";
const MAX_TEXT = 300; // the provider's error text is shown as text, and only this much of it

/** Thrown when the sign-in cannot be completed; its message is meant for the user. */
export class SignInError extends Error {}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomToken(size = 32) {
  const bytes = new Uint8Array(size);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** The portal's redirect URI: the page itself, registered as such at the provider. */
export function redirectUri() {
  return `${location.origin}/`;
}

/** Go to the provider's sign-in page; it comes back to `/` with a code (or an error). */
export async function beginSignIn(config) {
  const pending = { verifier: randomToken(32), state: randomToken(16), nonce: randomToken(16) };
  sessionStorage.setItem(PENDING_SLOT, JSON.stringify(pending));
  const url = new URL(config.authorization_endpoint);
  const query = {
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: config.scopes.join(" "),
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await challengeOf(pending.verifier),
    code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  location.assign(url.toString());
}

/** Printable text only, cut short: the provider's words are data, never markup. */
function plain(text) {
  const cleaned = String(text || "").replace(/[\u0000-\u001f\u007f<>]/g, " ").trim();
  return cleaned.length > MAX_TEXT ? `${cleaned.slice(0, MAX_TEXT)}…` : cleaned;
}

/** The claims of a JWT (not verified here: the API verifies every token it is sent). */
function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

const PROVIDER_ERRORS = {
  access_denied: "access was denied",
  login_required: "you need to sign in at your organisation first",
  consent_required: "consent is required",
  interaction_required: "your organisation needs you to act on its sign-in page",
  invalid_request: "the sign-in request was not accepted",
  unauthorized_client: "this portal is not allowed to use your organisation's sign-in",
  server_error: "your organisation's sign-in service had an error",
  temporarily_unavailable: "your organisation's sign-in service is unavailable right now",
};

/**
 * Finish the sign-in when this page load is the provider's redirect back: the access token,
 * or a SignInError with a message for the user. null when the page was opened normally.
 * Either way the code, state and any error are removed from the address bar and history.
 */
export async function completeSignIn(config) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error") && !params.has("state")) return null;
  let pending = null;
  try {
    pending = JSON.parse(sessionStorage.getItem(PENDING_SLOT) || "null");
  } catch {
    pending = null;
  }
  sessionStorage.removeItem(PENDING_SLOT);
  history.replaceState(null, "", location.pathname);
  const again = "Sign in with your organisation again.";
  if (params.has("error")) {
    const code = plain(params.get("error"));
    const reason = PROVIDER_ERRORS[code] || `the provider answered “${code}”`;
    const detail = plain(params.get("error_description"));
    throw new SignInError(`Your organisation's sign-in did not complete: ${reason}.${detail ? ` ${detail}.` : ""} ${again}`);
  }
  if (!config) {
    throw new SignInError("Single sign-on is not set up for this portal. Sign in with an API key.");
  }
  if (!pending || !pending.state || params.get("state") !== pending.state) {
    throw new SignInError(
      "Sign-in refused: the answer from your organisation's sign-in does not belong to the " +
        `sign-in started in this tab (its state does not match). ${again}`,
    );
  }
  const code = params.get("code");
  if (!code) throw new SignInError(`Your organisation's sign-in returned no code. ${again}`);
  let response;
  try {
    response = await fetch(config.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code,
        code_verifier: pending.verifier,
        client_id: config.client_id,
        redirect_uri: redirectUri(),
      }),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new SignInError(
      `Your organisation's sign-in service could not be reached to finish signing in. Check your network. ${again}`,
    );
  }
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  if (!response.ok || typeof body.access_token !== "string") {
    const reason = plain(body.error_description || body.error || `HTTP ${response.status}`);
    throw new SignInError(`Your organisation's sign-in service did not issue a token (${reason}). ${again}`);
  }
  // The nonce ties the token to the sign-in this tab started: a replayed token is refused.
  const claims = claimsOf(typeof body.id_token === "string" ? body.id_token : body.access_token);
  if (!claims || claims.nonce !== pending.nonce) {
    throw new SignInError(
      `Sign-in refused: the token is not the one this tab asked for (its nonce does not match). ${again}`,
    );
  }
  return body.access_token;
}
