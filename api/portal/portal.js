// Enclave staff chat portal: sign in with the organisation's OIDC provider or an API key,
// streamed answers with citations, feedback, history, a profile. Vanilla ES module, no build
// step; talks only to its own origin (and, to finish an OIDC sign-in, the token endpoint).
import { renderMarkdown } from "./markdown.js";
import { SignInError, beginSignIn, completeSignIn } from "./oidc.js";

// sessionStorage only: never a cookie, nothing that outlives the tab.
const KEY_SLOT = "enclave.apiKey";
const TOKEN_SLOT = "enclave.accessToken"; // the OIDC access token
const $ = (id) => document.getElementById(id);

const state = {
  model: null,
  messages: [], // the conversation sent to the model: [{role, content}]
  conversationId: null,
  controller: null, // AbortController of the answer being streamed
  busy: false,
  me: null,
  profile: { display_name: "", language: "en", default_knowledge_base: null },
  bases: [], // names of the tenant's knowledge bases
  signIn: { oidc: null, api_keys: true }, // /portal/config.json
};
const DEFAULT_PROFILE = { display_name: "", language: "en", default_knowledge_base: null };

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, problem, retryAfter, requestId) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }
}

/** The bearer credential: the OIDC access token or the API key, sent the same way. */
function credential() {
  return sessionStorage.getItem(TOKEN_SLOT) || sessionStorage.getItem(KEY_SLOT);
}

function forgetCredentials() {
  sessionStorage.removeItem(TOKEN_SLOT);
  sessionStorage.removeItem(KEY_SLOT);
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${credential()}`, ...extra };
}

async function problemOf(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText };
  }
  if (problem && problem.error && problem.error.problem) problem = problem.error.problem;
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  const requestId = problem.request_id || response.headers.get("X-Request-ID") || "unknown";
  return new ApiError(response.status, problem, retryAfter, requestId);
}

async function api(path, options = {}) {
  const withToken = Boolean(sessionStorage.getItem(TOKEN_SLOT));
  const response = await fetch(path, {
    ...options,
    headers: headers(options.headers),
    credentials: "omit",
  });
  if (!response.ok) {
    const error = await problemOf(response);
    if (withToken && response.status === 401) {
      // The organisation's token expired (or was revoked): back to signing in, said plainly.
      error.sessionExpired = true;
      if (state.me) signOut(`${explain(error)} (request id ${error.requestId})`);
    }
    throw error;
  }
  return response;
}

// ---------------------------------------------------------------- errors

/** One clear sentence per class of error, from the problem details. */
function explain(error) {
  if (!(error instanceof ApiError)) {
    return "The connection to Enclave was lost. Check your network and retry.";
  }
  const p = error.problem || {};
  const detail = p.detail || "";
  switch (error.status) {
    case 401:
      if (error.sessionExpired) {
        return "Your sign-in with your organisation has expired or was not accepted. Sign in again.";
      }
      return "Your key was not accepted or has expired. Sign in again.";
    case 403:
      return `You are not allowed to do this. ${detail}`;
    case 429:
      if (String(p.type || "").endsWith("quota-exceeded")) {
        const resets = p.quota_resets_at ? new Date(p.quota_resets_at).toLocaleString() : null;
        return `Your token quota is used up${resets ? `; it resets at ${resets}` : ""}. ${detail}`;
      }
      return `Too many requests: retry in ${error.retryAfter || 1} s. ${detail}`;
    case 503:
      return `Enclave is busy right now. ${detail}`;
    default:
      return `${p.title || "Request failed"}: ${detail}`;
  }
}

function showError(error, retry = null) {
  $("error-text").textContent = explain(error);
  $("error-request-id").textContent =
    error instanceof ApiError ? error.requestId : error.requestId || "none (no response)";
  $("error-retry").hidden = !retry;
  $("error-retry").onclick = retry
    ? () => {
        clearError();
        retry();
      }
    : null;
  $("error-sign-in").hidden = !(error instanceof ApiError && error.status === 401);
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function setPhase(text) {
  $("phase").textContent = text;
}

// ---------------------------------------------------------------- sign-in

function showSignIn(message = "") {
  $("app-view").hidden = true;
  $("sign-out").hidden = true;
  $("whoami").hidden = true;
  $("sign-in-view").hidden = false;
  $("oidc-sign-in").hidden = !state.signIn.oidc;
  $("sign-in-form").hidden = !state.signIn.api_keys;
  $("sign-in-error").textContent = message;
  $("sign-in-error").hidden = !message;
  $("api-key").value = "";
  if (state.signIn.api_keys) $("api-key").focus();
  else if (state.signIn.oidc) $("oidc-button").focus();
}

/** How this deployment signs users in; API keys only when the config cannot be read. */
async function loadSignInConfig() {
  try {
    const response = await fetch("/portal/config.json", { credentials: "omit", cache: "no-store" });
    if (response.ok) {
      const config = await response.json();
      state.signIn = { oidc: config.oidc || null, api_keys: config.api_keys !== false };
    }
  } catch {
    state.signIn = { oidc: null, api_keys: true };
  }
}

async function signInWithOrganisation() {
  if (!state.signIn.oidc) return;
  $("oidc-button").setAttribute("aria-disabled", "true");
  try {
    await beginSignIn(state.signIn.oidc);
  } catch {
    $("oidc-button").removeAttribute("aria-disabled");
    showSignIn("Sign-in could not start: this browser lacks the secure random and hashing functions it needs.");
  }
}

async function enter() {
  let me;
  try {
    me = await (await api("/v1/me")).json();
    const models = await (await api("/v1/models")).json();
    state.model = models.data.length ? models.data[0].id : null;
  } catch (error) {
    forgetCredentials();
    const message = error instanceof ApiError ? explain(error) : explain(null);
    const rid = error instanceof ApiError ? ` (request id ${error.requestId})` : "";
    showSignIn(message + rid);
    return;
  }
  state.me = me;
  await Promise.all([loadProfile(), loadBases()]);
  showWhoami();
  $("whoami").hidden = false;
  $("sign-out").hidden = false;
  $("profile-open").hidden = false;
  $("history-toggle").hidden = false;
  $("sign-in-view").hidden = true;
  $("app-view").hidden = false;
  newConversation();
  loadHistory();
}

function showWhoami() {
  const me = state.me;
  const who = state.profile.display_name || me.subject;
  $("whoami").textContent = `Signed in: ${who} (${me.roles.join(", ")}) · ${me.tenant}`;
}

function signOut(message = "You are signed out.") {
  if (state.controller) state.controller.abort();
  forgetCredentials();
  if ($("profile-dialog").open) $("profile-dialog").close();
  $("profile-open").hidden = true;
  $("history-toggle").hidden = true;
  setDrawer(false);
  state.me = null;
  state.profile = { ...DEFAULT_PROFILE };
  state.messages = [];
  state.conversationId = null;
  $("conversation").replaceChildren();
  $("history").replaceChildren();
  clearError();
  setPhase("");
  showSignIn(message);
}

// ---------------------------------------------------------------- rendering turns

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** Keep the newest text in view while it streams, unless the reader scrolled up to read;
 *  only the conversation scrolls, so the composer below it never leaves the screen. */
function followLog(always = false) {
  const log = $("conversation");
  const nearEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  if (always || nearEnd) log.scrollTop = log.scrollHeight;
}

function addUserTurn(text) {
  const turn = el("article", { class: "turn user", "aria-label": "You" }, el("p", { class: "who" }, "You"));
  turn.append(text); // text node: shown as typed
  $("conversation").append(turn);
  followLog(true);
}

function addAssistantTurn() {
  const answer = el("div", { class: "answer" });
  const sources = el("div", { class: "sources-wrap" });
  const tools = el("div", { class: "tools" });
  const feedback = el("div", { class: "feedback" });
  const note = el("p", { class: "turn-note", hidden: "" });
  const turn = el(
    "article",
    { class: "turn assistant", "aria-label": "Enclave" },
    el("p", { class: "who" }, "Enclave"),
    note,
    answer,
    sources,
    tools,
    feedback,
  );
  $("conversation").append(turn);
  return { turn, answer, sources, tools, feedback, note, text: "", requestId: null, recorded: false, rating: null };
}

function paint(view) {
  // The only HTML written into the page: renderMarkdown escapes everything first.
  view.answer.innerHTML = renderMarkdown(view.text);
  followLog();
}

/** Sources grouped by document: one entry per document, its passages under it, each passage
 *  keeping the number that its `[n]` markers in the answer point at. */
function groupSources(sources) {
  const groups = new Map();
  for (const source of sources) {
    const key = `${source.knowledge_base}\u0000${source.document_id}`;
    if (!groups.has(key)) groups.set(key, { title: source.title, documentId: source.document_id, passages: [] });
    groups.get(key).passages.push(source);
  }
  for (const group of groups.values()) group.passages.sort((a, b) => a.number - b.number);
  return [...groups.values()];
}

function passageLabel(source) {
  const where = (source.heading_path || []).filter(Boolean).join(" › ");
  return `[${source.number}] ${where || "Passage"}`;
}

function showSources(view, sources) {
  view.sources.replaceChildren();
  if (!sources || !sources.length) return;
  const list = el("ul", { class: "sources", "aria-label": "Sources" });
  for (const group of groupSources(sources)) {
    const passages = el("ul", { class: "passages" });
    for (const source of group.passages) {
      const item = el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "link citation",
            "data-number": String(source.number),
            onclick: () => openPassage(source),
          },
          passageLabel(source),
        ),
      );
      // Optional: the sentence(s) of the passage that answer the question.
      if (source.quote) item.append(el("p", { class: "quote" }, `“${source.quote}”`));
      passages.append(item);
    }
    list.append(
      el(
        "li",
        {},
        el("p", { class: "source-doc" }, `${group.title} `, el("span", { class: "doc-id" }, `(${group.documentId})`)),
        passages,
      ),
    );
  }
  view.sources.append(el("p", { class: "sources-title" }, "Sources"), list);
  linkCitations(view, sources);
}

/** Turn the answer's `[n]` markers into buttons that open passage n. */
function linkCitations(view, sources) {
  const byNumber = new Map(sources.map((source) => [String(source.number), source]));
  const walker = document.createTreeWalker(view.answer, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("pre, code, a, button")) continue;
    if (/\[\d{1,3}\]/.test(node.nodeValue)) found.push(node);
  }
  for (const node of found) {
    const parts = node.nodeValue.split(/(\[\d{1,3}\])/);
    const pieces = parts.map((part) => {
      const match = /^\[(\d{1,3})\]$/.exec(part);
      const source = match && byNumber.get(match[1]);
      if (!source) return document.createTextNode(part);
      return el(
        "button",
        {
          type: "button",
          class: "cite",
          "data-number": match[1],
          "aria-label": `Source ${match[1]}: ${source.title}`,
          onclick: () => openPassage(source),
        },
        part,
      );
    });
    node.replaceWith(...pieces);
  }
}

function addTools(view, { regenerate, feedback = false }) {
  view.tools.replaceChildren();
  // Nothing arrived (refused before the first token): nothing to copy.
  if (view.text) view.tools.append(
    el(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: async (event) => {
          try {
            await navigator.clipboard.writeText(view.text);
            event.target.textContent = "Copied";
            sendSignal(view, "copy");
          } catch {
            event.target.textContent = "Copy not allowed here";
          }
        },
      },
      "Copy",
    ),
  );
  if (regenerate) {
    const again = () => {
      if (state.busy) return;
      sendSignal(view, "regenerate");
      regenerate();
    };
    view.tools.append(el("button", { type: "button", class: "secondary", onclick: again }, "Regenerate"));
  }
  view.feedback.replaceChildren();
  if (feedback && view.requestId) addFeedback(view);
}

// ---------------------------------------------------------------- feedback and signals

/** Tell the quality signals what the user did with an answer. Fire-and-forget: whatever
 *  happens to this request, the chat goes on undisturbed. */
function sendSignal(view, kind) {
  if (!view.requestId || !view.recorded) return; // only answers the server kept have signals
  api("/v1/signals", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ request_id: view.requestId, kind }),
    keepalive: true,
  }).catch(() => {});
}

const RATINGS = [
  // Geometric arrows, not emoji: every font has them (kiosk browsers often lack emoji).
  { rating: "up", label: "Helpful", symbol: "\u25B2" },
  { rating: "down", label: "Not helpful", symbol: "\u25BC" },
];

/** Thumbs up/down under an answer; once rated, an optional comment can follow. */
function addFeedback(view) {
  const status = el("p", { class: "feedback-status", role: "status" });
  const thumbs = RATINGS.map(({ rating, label, symbol }) =>
    el(
      "button",
      {
        type: "button",
        class: "secondary thumb",
        "aria-pressed": "false",
        "data-rating": rating,
        onclick: () => rate(view, rating),
      },
      el("span", { "aria-hidden": "true" }, symbol),
      ` ${label}`,
    ),
  );
  const commentId = `comment-${view.requestId}`;
  const comment = el("textarea", { id: commentId, rows: "2", maxlength: "2000" });
  const form = el(
    "form",
    { class: "feedback-comment", hidden: "" },
    el("label", { for: commentId }, "Comment (optional)"),
    comment,
    el("button", { type: "submit", class: "secondary" }, "Send comment"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = comment.value.trim();
    if (text && view.rating) rate(view, view.rating, text);
  });
  view.feedback.append(
    el("div", { class: "thumbs", role: "group", "aria-label": "Rate this answer" }, ...thumbs),
    form,
    status,
  );
  view.feedbackParts = { thumbs, form, comment, status };
}

async function rate(view, rating, comment = null) {
  const { thumbs, form, comment: box, status } = view.feedbackParts;
  const before = view.rating;
  view.rating = rating;
  for (const thumb of thumbs) thumb.setAttribute("aria-pressed", String(thumb.dataset.rating === rating));
  status.textContent = "Saving your feedback…";
  try {
    await api("/v1/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ request_id: view.requestId, rating, comment }),
    });
    if (comment) {
      form.hidden = true;
      box.value = "";
      status.textContent = "Thank you: your comment was sent.";
    } else {
      form.hidden = false;
      status.textContent = "Thank you for your feedback. You can add a comment.";
    }
  } catch (error) {
    if (!comment) {
      view.rating = before;
      for (const thumb of thumbs) {
        thumb.setAttribute("aria-pressed", String(Boolean(before) && thumb.dataset.rating === before));
      }
    }
    const rid = error instanceof ApiError ? ` (request id ${error.requestId})` : "";
    status.textContent = `Your feedback was not saved: ${explain(error)}${rid}`;
  }
}

function showPii(lineage) {
  const protectedKinds = lineage && lineage.pii && lineage.pii.protected;
  const any = Array.isArray(protectedKinds)
    ? protectedKinds.length > 0
    : protectedKinds && Object.keys(protectedKinds).length > 0;
  $("pii-notice").hidden = !any;
}

// ---------------------------------------------------------------- passages

async function openPassage(source) {
  const kb = encodeURIComponent(source.knowledge_base);
  const chunk = encodeURIComponent(source.chunk_id); // the chunk id holds a '#'
  try {
    const passage = await (await api(`/v1/knowledge-bases/${kb}/passages/${chunk}`)).json();
    $("passage-title").textContent = `[${source.number}] ${passage.title}`;
    const where = [passage.knowledge_base, passage.doc_id, ...(passage.heading_path || [])];
    $("passage-where").textContent = where.join(" › ");
    showPassageText(passage.text, source.quote);
    $("passage").hidden = false;
    $("passage-close").focus();
  } catch (error) {
    showError(error, () => openPassage(source));
  }
}

/** The passage, with the quote (when the answer's source has one) highlighted: a quote is
 * runs of the passage's own text joined by QUOTE_GAP, each highlighted where it stands. */
const QUOTE_GAP = " … ";
function showPassageText(text, quote) {
  const box = $("passage-text");
  const pieces = [];
  let from = 0;
  for (const part of quote ? quote.split(QUOTE_GAP) : []) {
    const at = part ? text.indexOf(part, from) : -1;
    if (at < 0) continue;
    pieces.push(text.slice(from, at), el("mark", {}, part));
    from = at + part.length;
  }
  pieces.push(text.slice(from));
  box.replaceChildren(...pieces);
}

// ---------------------------------------------------------------- chat

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** Split server-sent-event frames out of the buffer; returns [frames' data, rest]. */
function takeFrames(buffer) {
  const frames = [];
  let rest = buffer.replace(/\r\n/g, "\n");
  let end = rest.indexOf("\n\n");
  while (end >= 0) {
    const block = rest.slice(0, end);
    rest = rest.slice(end + 2);
    const data = block
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n");
    if (data) frames.push(data);
    end = rest.indexOf("\n\n");
  }
  return [frames, rest];
}

async function ask(text) {
  clearError();
  state.messages.push({ role: "user", content: text });
  addUserTurn(text);
  await answer(addAssistantTurn());
}

/** Stream the answer to state.messages into `view`; retries a 503 once after Retry-After. */
async function answer(view, attempt = 0) {
  setBusy(true);
  setPhase("Sending…");
  const controller = new AbortController();
  state.controller = controller;
  // A low temperature: staff want the handbook's answer, not a creative one.
  const body = { model: state.model, messages: state.messages, stream: true, temperature: 0.2 };
  if (state.conversationId) body.conversation_id = state.conversationId;
  body.language = state.profile.language || "en";
  const base = $("knowledge-base").value;
  if (base) body.knowledge_base = base;
  let lineage = null;
  let failure = null;
  let requestId = null;
  let finished = false; // the server said [DONE]: anything less is a cut-off answer
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    requestId = response.headers.get("X-Request-ID");
    view.requestId = requestId;
    view.turn.dataset.requestId = requestId || "";
    setPhase("Generating…");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let frames;
      [frames, buffer] = takeFrames(buffer + value);
      for (const data of frames) {
        if (data === "[DONE]") {
          finished = true;
          continue;
        }
        const frame = JSON.parse(data);
        if (frame.error) {
          const problem = frame.error.problem || { detail: frame.error.message, status: frame.error.code };
          failure = new ApiError(problem.status || 503, problem, null, frame.error.request_id);
        } else if (frame.choices && frame.choices.length) {
          const piece = frame.choices[0].delta && frame.choices[0].delta.content;
          if (piece) {
            view.text += piece;
            paint(view);
          }
        } else if (frame.enclave && frame.enclave.event === "fallback") {
          setPhase("Generating… (switched to the fallback model)");
          showFallback(view);
        } else if (frame.enclave) {
          lineage = frame.enclave;
          if (lineage.request_id) view.requestId = view.turn.dataset.requestId = lineage.request_id;
        }
      }
    }
    if (!finished && !failure && !controller.signal.aborted) {
      throw new TypeError("the answer stream ended before the server finished it");
    }
  } catch (error) {
    if (controller.signal.aborted) {
      setPhase("Stopped.");
    } else if (error instanceof ApiError && error.status === 503 && attempt === 0) {
      const wait = error.retryAfter || 2;
      setPhase(`Enclave is busy; retrying in ${wait} s…`);
      await sleep(wait);
      if (state.controller === controller && !controller.signal.aborted) return answer(view, 1);
      setPhase("Stopped.");
      return undefined;
    } else {
      failure = error;
      if (!(error instanceof ApiError)) failure.requestId = requestId; // the stream broke
    }
  } finally {
    if (state.controller === controller) {
      state.controller = null;
      setBusy(false);
    }
  }
  if (failure && !(failure instanceof ApiError) && !failure.requestId) {
    failure.requestId = view.requestId;
  }
  if (failure && failure instanceof ApiError && failure.status === 401) {
    showError(failure);
    return undefined;
  }
  if (failure) {
    // Keep whatever arrived; offer to ask again.
    setPhase(view.text ? "The answer was cut off." : "No answer.");
    showError(failure, () => regenerate(view));
    addTools(view, { regenerate: () => regenerate(view) });
    return undefined;
  }
  if (controller.signal.aborted) {
    addTools(view, { regenerate: () => regenerate(view) });
    return undefined;
  }
  state.messages.push({ role: "assistant", content: view.text });
  view.messageIndex = state.messages.length - 1;
  view.recorded = true;
  if (lineage) {
    if (lineage.conversation_id) state.conversationId = lineage.conversation_id;
    showSources(view, lineage.sources);
    showPii(lineage);
    if (lineage.fallback) showFallback(view);
    setPhase(lineage.retrieval === "degraded" ? "Done — documents unavailable, answered without them." : "Done.");
  } else {
    setPhase("Done.");
  }
  addTools(view, { regenerate: () => regenerate(view), feedback: true });
  loadHistory();
  return undefined;
}

/** A lasting note on the answer: the phase line changes, this stays with the answer. */
function showFallback(view) {
  view.note.textContent = "Answered by the fallback model: the main model did not respond in time.";
  view.note.hidden = false;
}

/** Ask the last question again, replacing this answer. */
async function regenerate(view) {
  if (state.busy) return;
  clearError();
  if (view.messageIndex !== undefined) state.messages.splice(view.messageIndex, 1);
  view.messageIndex = undefined;
  view.text = "";
  view.requestId = null;
  view.recorded = false;
  view.rating = null;
  view.note.hidden = true;
  view.sources.replaceChildren();
  view.tools.replaceChildren();
  view.feedback.replaceChildren();
  paint(view);
  await answer(view);
}

function stop() {
  if (state.controller) state.controller.abort(); // the server stops generating on disconnect
}

function newConversation() {
  stop();
  state.messages = [];
  state.conversationId = null;
  $("conversation").replaceChildren();
  $("passage").hidden = true;
  $("pii-notice").hidden = true;
  clearError();
  setPhase("");
  $("knowledge-base").value = preferredBase();
  for (const item of $("history").children) item.classList.remove("current");
  $("message").focus();
}

// ---------------------------------------------------------------- profile

/** The profile's default knowledge base when it still exists, else the tenant's default. */
function preferredBase() {
  const wanted = state.profile.default_knowledge_base;
  return wanted && state.bases.includes(wanted) ? wanted : "";
}

async function loadProfile() {
  try {
    state.profile = { ...DEFAULT_PROFILE, ...(await (await api("/v1/me/profile")).json()) };
  } catch {
    // Not fatal: chat works with the defaults; the dialog says so if saving fails too.
    state.profile = { ...DEFAULT_PROFILE };
  }
}

async function loadBases() {
  try {
    const { data } = await (await api("/v1/knowledge-bases")).json();
    state.bases = data.map((b) => b.name);
  } catch {
    state.bases = []; // retrieval off or unreachable: the tenant's default is all there is
  }
  for (const id of ["knowledge-base", "profile-kb"]) {
    const select = $(id);
    const first = select.options[0];
    select.replaceChildren(first, ...state.bases.map((name) => el("option", { value: name }, name)));
  }
}

function openProfile() {
  const p = state.profile;
  $("profile-name").value = p.display_name || "";
  const language = $("profile-language");
  if (![...language.options].some((o) => o.value === p.language)) {
    language.append(el("option", { value: p.language }, p.language)); // e.g. a regional tag
  }
  language.value = p.language || "en";
  $("profile-kb").value = preferredBase();
  $("profile-error").hidden = true;
  $("profile-dialog").showModal();
  $("profile-name").focus();
}

async function saveProfile() {
  const wanted = {
    display_name: $("profile-name").value.trim(),
    language: $("profile-language").value,
    default_knowledge_base: $("profile-kb").value || null,
  };
  $("profile-save").disabled = true;
  try {
    const response = await api("/v1/me/profile", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(wanted),
    });
    state.profile = { ...DEFAULT_PROFILE, ...(await response.json()) };
    $("profile-dialog").close();
    showWhoami();
    if (!state.messages.length) $("knowledge-base").value = preferredBase();
    setPhase("Profile saved: new conversations use it.");
    $("profile-open").focus();
  } catch (error) {
    const rid = error instanceof ApiError ? ` (request id ${error.requestId})` : "";
    $("profile-error").textContent = explain(error) + rid;
    $("profile-error").hidden = false;
  } finally {
    $("profile-save").disabled = false;
  }
}

// ---------------------------------------------------------------- history

const HISTORY_PAGE = 30;
const history = { cursor: null, loading: false, generation: 0 };

/** The first page of the history (again): after a search, a new answer, a rename. */
async function loadHistory() {
  history.generation += 1;
  history.cursor = null;
  history.loading = false;
  await loadHistoryPage(true);
}

/** The next, older page; called as the end of the list scrolls into view. */
async function loadHistoryPage(first = false) {
  if (history.loading || (!first && !history.cursor)) return;
  const generation = history.generation;
  history.loading = true;
  const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  const search = $("search").value.trim();
  if (search) params.set("search", search);
  if (!first) params.set("before", history.cursor);
  try {
    const page = await (await api(`/v1/conversations?${params}`)).json();
    if (generation !== history.generation) return; // a newer search replaced this list
    // Conversations move to the top when answered: never list one twice across pages.
    const shownIds = first ? new Set() : new Set([...$("history").children].map((li) => li.dataset.id));
    const items = page.data.filter((c) => !shownIds.has(c.id)).map(historyItem);
    if (first) $("history").replaceChildren(...items);
    else $("history").append(...items);
    history.cursor = page.next_cursor || null;
    $("history-more").hidden = !history.cursor;
    const shown = $("history").children.length;
    $("history-status").textContent = shown ? "" : "No conversations yet.";
  } catch (error) {
    showError(error, () => loadHistoryPage(first));
  } finally {
    if (generation === history.generation) history.loading = false;
  }
  // A tall screen may show the whole first page: fill it before waiting for a scroll.
  if (history.cursor && generation === history.generation && moreInView()) loadHistoryPage();
}

function moreInView() {
  const box = $("history-scroll");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80 && box.clientHeight > 0;
}

const ITEM_ACTIONS = [
  { label: "Rename", act: (c) => rename(c) },
  { label: "Export as Markdown", act: (c) => exportConversation(c, "markdown") },
  { label: "Export as JSON", act: (c) => exportConversation(c, "json") },
  { label: "Delete", act: (c) => remove(c), danger: true },
];

function historyItem(conversation) {
  const title = conversation.title || "Untitled";
  const item = el("li", { "data-id": conversation.id });
  if (conversation.id === state.conversationId) item.classList.add("current");
  const menuId = `menu-${conversation.id}`;
  const toggle = el(
    "button",
    {
      type: "button",
      class: "secondary menu-button",
      "aria-haspopup": "menu",
      "aria-expanded": "false",
      "aria-controls": menuId,
      "aria-label": `Actions for “${title}”`,
    },
    el("span", { "aria-hidden": "true" }, "\u22EF"),
  );
  const menu = el("ul", { id: menuId, class: "item-menu", role: "menu", "aria-label": `Actions for “${title}”`, hidden: "" });
  for (const action of ITEM_ACTIONS) {
    const entry = el(
      "button",
      {
        type: "button",
        role: "menuitem",
        tabindex: "-1",
        class: action.danger ? "danger" : "",
        onclick: () => {
          closeMenu(menu, toggle, false);
          action.act(conversation);
        },
      },
      action.label,
    );
    menu.append(el("li", { role: "none" }, entry));
  }
  toggle.addEventListener("click", () => (menu.hidden ? openMenu(menu, toggle) : closeMenu(menu, toggle)));
  toggle.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      openMenu(menu, toggle, event.key === "ArrowUp" ? -1 : 0);
    }
  });
  menu.addEventListener("keydown", (event) => menuKeys(event, menu, toggle));
  item.append(
    el("button", { type: "button", class: "link open", title, onclick: () => openConversation(conversation.id) }, title),
    toggle,
    menu,
  );
  return item;
}

let openedMenu = null;

function openMenu(menu, toggle, index = 0) {
  if (openedMenu) closeMenu(openedMenu.menu, openedMenu.toggle, false);
  menu.hidden = false;
  toggle.setAttribute("aria-expanded", "true");
  openedMenu = { menu, toggle };
  const items = [...menu.querySelectorAll('[role="menuitem"]')];
  items.at(index).focus();
}

function closeMenu(menu, toggle, refocus = true) {
  menu.hidden = true;
  toggle.setAttribute("aria-expanded", "false");
  if (openedMenu && openedMenu.menu === menu) openedMenu = null;
  if (refocus) toggle.focus();
}

/** The WAI-ARIA menu button pattern: arrows move, Home/End jump, Esc and Tab close. */
function menuKeys(event, menu, toggle) {
  const items = [...menu.querySelectorAll('[role="menuitem"]')];
  const at = items.indexOf(document.activeElement);
  const move = { ArrowDown: 1, ArrowUp: -1 }[event.key];
  if (move) {
    event.preventDefault();
    items[(at + move + items.length) % items.length].focus();
  } else if (event.key === "Home" || event.key === "End") {
    event.preventDefault();
    items.at(event.key === "Home" ? 0 : -1).focus();
  } else if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    closeMenu(menu, toggle);
  } else if (event.key === "Tab") {
    closeMenu(menu, toggle, false);
  }
}

// ---------------------------------------------------------------- the history drawer (phones)

const NARROW = window.matchMedia("(max-width: 48rem)");

function setDrawer(open) {
  $("app-view").classList.toggle("drawer-open", open);
  $("history-toggle").setAttribute("aria-expanded", String(open));
  $("drawer-backdrop").hidden = !open;
  if (open) $("new-chat").focus();
}

function closeDrawerIfNarrow(refocus = false) {
  if (!NARROW.matches || !$("app-view").classList.contains("drawer-open")) return;
  setDrawer(false);
  if (refocus) $("history-toggle").focus();
}

function markCurrent() {
  for (const item of $("history").children) {
    item.classList.toggle("current", item.dataset.id === state.conversationId);
  }
}

async function openConversation(id) {
  if (state.busy) stop();
  try {
    const conversation = await (await api(`/v1/conversations/${encodeURIComponent(id)}`)).json();
    newConversation();
    state.conversationId = conversation.id;
    for (const message of conversation.messages) {
      if (message.role === "user") {
        addUserTurn(message.content);
      } else if (message.role === "assistant") {
        const view = addAssistantTurn();
        view.text = message.content;
        view.requestId = message.request_id || null;
        view.recorded = true;
        paint(view);
        showSources(view, message.sources);
        addTools(view, { feedback: true });
      }
      state.messages.push({ role: message.role, content: message.content });
    }
    setPhase(`Opened “${conversation.title || "Untitled"}”.`);
    markCurrent();
    closeDrawerIfNarrow();
    $("message").focus();
  } catch (error) {
    showError(error, () => openConversation(id));
  }
}

async function rename(conversation) {
  const title = window.prompt("New title", conversation.title || "");
  if (title === null || !title.trim()) return;
  try {
    await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ title }),
    });
    loadHistory();
  } catch (error) {
    showError(error);
  }
}

async function remove(conversation) {
  if (!window.confirm(`Delete “${conversation.title || "Untitled"}” for good?`)) return;
  try {
    await api(`/v1/conversations/${encodeURIComponent(conversation.id)}`, { method: "DELETE" });
    if (conversation.id === state.conversationId) newConversation();
    loadHistory();
  } catch (error) {
    showError(error);
  }
}

async function exportConversation(conversation, format) {
  try {
    const id = encodeURIComponent(conversation.id);
    const response = await api(`/v1/conversations/${id}/export?format=${format}`);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: `${conversation.id}.${format === "json" ? "json" : "md"}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showError(error);
  }
}

// ---------------------------------------------------------------- wiring

async function start() {
  $("oidc-button").addEventListener("click", (event) => {
    event.preventDefault();
    signInWithOrganisation();
  });
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      showSignIn("Enter your API key.");
      return;
    }
    sessionStorage.removeItem(TOKEN_SLOT);
    sessionStorage.setItem(KEY_SLOT, key);
    enter();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("profile-open").addEventListener("click", openProfile);
  $("profile-cancel").addEventListener("click", () => {
    $("profile-dialog").close();
    $("profile-open").focus();
  });
  $("profile-form").addEventListener("submit", (event) => {
    event.preventDefault(); // saved through the API; the dialog closes only on success
    saveProfile();
  });
  $("error-sign-in").addEventListener("click", () => signOut());
  $("new-chat").addEventListener("click", () => {
    newConversation();
    closeDrawerIfNarrow();
  });
  $("history-toggle").addEventListener("click", () => setDrawer(!$("app-view").classList.contains("drawer-open")));
  $("history-close").addEventListener("click", () => closeDrawerIfNarrow(true));
  $("drawer-backdrop").addEventListener("click", () => closeDrawerIfNarrow(true));
  NARROW.addEventListener("change", () => setDrawer(false));
  $("history-more").addEventListener("click", () => loadHistoryPage());
  $("history-scroll").addEventListener("scroll", () => {
    if (moreInView()) loadHistoryPage();
  });
  document.addEventListener("click", (event) => {
    if (openedMenu && !openedMenu.menu.parentElement.contains(event.target)) {
      closeMenu(openedMenu.menu, openedMenu.toggle, false);
    }
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadHistory();
  });
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadHistory, 250);
  });
  $("passage-close").addEventListener("click", () => {
    $("passage").hidden = true;
    $("message").focus();
  });
  $("stop").addEventListener("click", stop);
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text || state.busy) return;
    $("message").value = "";
    ask(text);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "Escape") {
      stop();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (state.busy) stop();
    else closeDrawerIfNarrow(true);
  });
  await loadSignInConfig();
  let token = null;
  try {
    token = await completeSignIn(state.signIn.oidc);
  } catch (error) {
    forgetCredentials();
    showSignIn(error instanceof SignInError ? error.message : "Sign-in did not complete. Sign in again.");
    return;
  }
  if (token) {
    sessionStorage.removeItem(KEY_SLOT);
    sessionStorage.setItem(TOKEN_SLOT, token);
  }
  if (credential()) enter();
  else showSignIn();
}

start();
