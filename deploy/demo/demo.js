// The demo page: one EventSource on the chosen topics, every event and every reconnect shown
// as it happens, and a form that publishes through /v1/publish. The browser's own EventSource
// does the resuming: after a drop it reconnects and sends Last-Event-ID by itself.
//
// With a token in the Token field (gateways started with a JWT key), the stream sends it as
// `access_token`: an EventSource cannot set headers. When it expires the gateway sends
// `sse.token_expired` and ends the stream. The browser would reconnect with the same URL, so
// the same expired token: the page closes the EventSource instead and, once the field holds
// another token (at once if it already does), opens a new one with that token and
// `lastEventId`, so nothing is lost or shown twice.
//
// The streams listening to each topic over the whole fleet come from the publisher's topic-info
// endpoint (GET /v1/topics/<topic>, authorized like publishing: the Publish form's token),
// asked every 2 s; they are as fresh as the gateways' --count-refresh (10 s by default).

const $ = (id) => document.getElementById(id);
let source = null;
let connections = 0;
let count = 0;
// The token the current stream was opened with ("" for none).
let tokenInUse = "";
// While an expired token waits for a new one: the topics and the position to resume from.
let waitingForToken = null;
// The pending restart after the browser gave up (see onerror).
let retry = null;
// The listener count's poll.
let listenersPoll = null;

function row(cells, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  $("events").prepend(tr);
}

function setStatus(text, className) {
  $("status").textContent = text;
  $("status").className = className || "";
}

function onEvent(event) {
  count += 1;
  $("count").textContent = count;
  $("last-id").textContent = event.lastEventId || "–";
  const label = event.type === "message" ? "message" : event.type;
  row([String(count), label, event.lastEventId, event.data], event.type.startsWith("sse.") ? "control" : "");
}

// Shows how many streams listen to each of `topics` over the fleet, now and every 2 s.
function watchListeners(topics) {
  clearInterval(listenersPoll);
  const show = async () => {
    const parts = await Promise.all(topics.map(async (topic) => {
      try {
        // Topic characters (letters, digits, _ - . : /) need no escaping in a path.
        const response = await fetch("/v1/topics/" + topic, {
          headers: { Authorization: "Bearer " + $("publish-token").value },
        });
        if (!response.ok) return `${topic}: ${response.status} (the Publish token may read counts)`;
        const info = await response.json();
        return `${topic}: ${info.subscribers} on ${info.nodes} node${info.nodes === 1 ? "" : "s"}`;
      } catch {
        return `${topic}: –`;
      }
    }));
    $("listeners").textContent = parts.join(" · ");
  };
  show();
  listenersPoll = setInterval(show, 2000);
}

function connect(topics, lastEventId) {
  disconnect();
  watchListeners(topics);
  let query = topics.map((t) => "topic=" + encodeURIComponent(t)).join("&");
  // A new EventSource cannot send Last-Event-ID itself; the query parameter carries it.
  if (lastEventId) query += "&lastEventId=" + encodeURIComponent(lastEventId);
  tokenInUse = $("token").value.trim();
  if (tokenInUse) query += "&access_token=" + encodeURIComponent(tokenInUse);
  source = new EventSource("/events?" + query);
  // Named events need their own listeners; every publisher-chosen name is unknown here, so
  // the demo listens for the names it publishes plus the control events.
  source.onmessage = onEvent;
  source.addEventListener("sse.truncated", onEvent);
  source.addEventListener("sse.token_expired", (event) => onTokenExpired(topics, event));
  for (const name of knownEventNames) source.addEventListener(name, onEvent);
  source.onopen = () => {
    connections += 1;
    $("connections").textContent = connections;
    setStatus("open", "open");
    if (connections > 1) {
      // The browser sent Last-Event-ID with this connection: the gateway resumes from it.
      row(["", "reconnected", "resuming after " + $("last-id").textContent, ""], "reconnect");
    }
  };
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      setStatus("reconnecting…", "reconnecting");
      return;
    }
    // The browser gives up for good when a reconnect gets an error status (e.g. 502 or 503
    // from a proxy while every node is down): start over, resuming from the last id.
    setStatus("closed; retrying in 2 s", "reconnecting");
    const lastId = $("last-id").textContent;
    retry = setTimeout(() => connect(topics, lastId === "–" ? "" : lastId), 2000);
  };
}

function disconnect() {
  if (source) source.close();
  source = null;
  clearTimeout(retry);
  clearInterval(listenersPoll);
  waitingForToken = null;
  setStatus("not connected");
}

// The control event carries no id, so its lastEventId is the stream's position: the last
// event's id, or the position the stream opened at if no event came yet.
function onTokenExpired(topics, event) {
  const lastEventId = event.lastEventId;
  const expired = tokenInUse;
  disconnect();
  setStatus("token expired", "reconnecting");
  row(["", "token expired", "resuming after " + (lastEventId || "–"), "put a new token in the field"], "expired");
  waitingForToken = { topics, lastEventId, expired };
  resumeWithNewToken();
}

function resumeWithNewToken() {
  const token = $("token").value.trim();
  if (!waitingForToken || !token || token === waitingForToken.expired) return;
  const { topics, lastEventId } = waitingForToken;
  connect(topics, lastEventId);
}

const knownEventNames = new Set();

$("subscribe").addEventListener("submit", (e) => {
  e.preventDefault();
  const topics = $("topics").value.split(",").map((t) => t.trim()).filter(Boolean);
  // Enter in the Token field after an expiry, the same topics: resume, do not start over.
  if (waitingForToken && topics.join() === waitingForToken.topics.join()) return resumeWithNewToken();
  if (topics.length) connect(topics);
});
$("disconnect").addEventListener("click", disconnect);
$("token").addEventListener("input", resumeWithNewToken);

$("publish").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { topic: $("publish-topic").value.trim(), data: $("publish-data").value };
  const name = $("publish-event").value.trim();
  if (name) {
    body.event = name;
    if (!knownEventNames.has(name)) {
      knownEventNames.add(name);
      if (source) source.addEventListener(name, onEvent);
    }
  }
  const response = await fetch("/v1/publish", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + $("publish-token").value },
    body: JSON.stringify(body),
  });
  $("publish-result").textContent = response.status + " " + (await response.text());
});

// Connect at once to the topics in the URL (?topics=a,b) or the default.
const initial = new URLSearchParams(location.search).get("topics");
if (initial) $("topics").value = initial;
connect($("topics").value.split(",").map((t) => t.trim()).filter(Boolean));
