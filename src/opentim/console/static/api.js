// The console's API: every change sends the CSRF token its login returned; REST commands
// go through /console/api/v4/<service>/<command> and answer exactly as /v4 does.

export class ApiError extends Error {
  constructor(code, info, status, reply) {
    super(`ErrorCode ${code}: ${info}`);
    this.code = code;
    this.info = info;
    this.status = status;
    this.reply = reply;
  }
}

export const session = { info: null, csrf: "", commands: {} };
const listeners = new Set();

export function onSessionEnded(fn) {
  listeners.add(fn);
}

export function setSession(info) {
  session.info = info;
  session.csrf = info ? info.CSRFToken : "";
  session.commands = info ? info.Commands || {} : {};
}

export function has(path) {
  const [svc, name] = path.split("/");
  return Boolean(session.commands[svc] && session.commands[svc].includes(name));
}

async function request(method, path, body) {
  const options = { method, credentials: "same-origin", cache: "no-store", headers: {} };
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = session.csrf;
    options.body = JSON.stringify(body === undefined ? {} : body);
  }
  let response;
  try {
    response = await fetch(`/console/api/${path}`, options);
  } catch (err) {
    throw new ApiError(-1, `the server did not answer (${err.message})`, 0);
  }
  let doc;
  try {
    doc = await response.json();
  } catch {
    throw new ApiError(-1, `HTTP ${response.status}`, response.status);
  }
  if (response.status === 401 && path !== "login") {
    // (only a session that was open has ended: a first visit is just not logged in yet)
    const ended = session.info !== null;
    setSession(null);
    if (ended) for (const fn of listeners) fn(doc);
  }
  if (doc.ErrorCode !== 0) {
    throw new ApiError(doc.ErrorCode, doc.ErrorInfo || "", response.status, doc);
  }
  return doc;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const rest = (command, body) => request("POST", `v4/${command}`, body);

export function random32() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0];
}
