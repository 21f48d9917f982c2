// The page's only link to the world: the gateway that served it (WebSocket /ws and HTTP /v1/...).

/** An error answered by the gateway or a service: `code` as in sonalyze_protocol.errors, plus the message. */
export class GatewayError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.code = code;
    this.details = details;
  }
}

/** A device id for this browser, kept across reloads so a reload rejoins as the same device. */
export function browserDeviceId(storage = window.localStorage) {
  let id = storage.getItem("sonalyze.device_id");
  if (!id) {
    const random = crypto.getRandomValues(new Uint32Array(2));
    id = `browser-${random[0].toString(36)}${random[1].toString(36)}`;
    storage.setItem("sonalyze.device_id", id);
  }
  return id;
}

/**
 * The WebSocket client: requests matched to responses by request_id, pushes dispatched by event name,
 * reconnecting with back-off (pushes missed meanwhile are caught up by the views' own status requests).
 */
export class GatewaySocket {
  constructor(deviceId, { url = defaultSocketUrl(deviceId), timeoutMs = 60000 } = {}) {
    this.deviceId = deviceId;
    this.url = url;
    this.timeoutMs = timeoutMs;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Map();
    this.socket = null;
    this.retryMs = 500;
    this.closed = false;
  }

  connect() {
    this.closed = false;
    return new Promise((resolve) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      socket.addEventListener("open", () => {
        this.retryMs = 500;
        this.emit("connection", { connected: true });
        resolve();
      });
      socket.addEventListener("message", (message) => this.receive(message.data));
      socket.addEventListener("close", () => {
        for (const { reject, timer } of this.pending.values()) {
          clearTimeout(timer);
          reject(new GatewayError("service_unavailable", "the connection to the gateway closed"));
        }
        this.pending.clear();
        this.emit("connection", { connected: false });
        if (!this.closed) {
          setTimeout(() => this.connect(), this.retryMs);
          this.retryMs = Math.min(this.retryMs * 2, 8000);
        }
        resolve();
      });
    });
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }

  get connected() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Send one event; resolves with the response's data or rejects with a GatewayError. */
  request(event, data = {}) {
    if (!this.connected) {
      return Promise.reject(new GatewayError("service_unavailable", "not connected to the gateway"));
    }
    const requestId = String(this.nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new GatewayError("timeout", `no answer to ${event} within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      this.socket.send(JSON.stringify({ event, request_id: requestId, data }));
    });
  }

  /** Listen to pushes of one event name ("*" for every push, "connection" for socket state). */
  on(event, callback) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(callback);
    return () => this.listeners.get(event).delete(callback);
  }

  emit(event, data) {
    for (const name of [event, "*"]) {
      for (const callback of this.listeners.get(name) ?? []) {
        try {
          callback(data, event);
        } catch (error) {
          console.error("listener of", event, "failed:", error);
        }
      }
    }
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "event") {
      this.emit(frame.event, frame.data ?? {});
      return;
    }
    const waiting = this.pending.get(String(frame.request_id));
    if (!waiting) return;
    this.pending.delete(String(frame.request_id));
    clearTimeout(waiting.timer);
    if (frame.type === "response") waiting.resolve(frame.data);
    else waiting.reject(new GatewayError(frame.error?.code ?? "internal_error", frame.error?.message, frame.error ?? {}));
  }
}

function defaultSocketUrl(deviceId) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws?device_id=${encodeURIComponent(deviceId)}`;
}

/** JSON over the gateway's HTTP proxy; an error envelope becomes a GatewayError. */
export async function httpJson(path, { method = "GET", body, headers = {} } = {}) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? headers : { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload?.error ?? {};
    throw new GatewayError(error.code ?? `http_${response.status}`, error.message ?? text.slice(0, 300), error);
  }
  return payload;
}
