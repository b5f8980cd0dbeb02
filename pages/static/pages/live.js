// Live updates for a debate page, from the topic's event stream (GET /api/topics/{id}/events/).
//
// The page is complete without this script; it only keeps the page current:
// - argument_posted: the argument, rendered by the server (its fragment URL), goes into its round;
// - any other event: the page is fetched again and its regions (status, timeline, camps,
//   transcript, verdict) are swapped in place: the server renders everything, once.
// Resume: the page says which event it shows (data-after); the stream starts after it, and
// after a drop the browser resends the last id it got (Last-Event-ID). After the topic's last
// event (completed, or cancelled) the stream is closed and never opened again.
(() => {
  "use strict";
  const main = document.querySelector("[data-topic-page]");
  if (!main || main.dataset.live !== "true" || !("EventSource" in window)) return;

  const KINDS = ["status_changed", "camps_allocated", "round_opened", "round_closed", "argument_posted",
    "verdict_posted", "topic_cancelled", "ballot_posted", "identities_revealed"];
  const REGIONS = ["status", "timeline", "camps", "transcript", "verdict"];
  let lastId = Number(main.dataset.after) || 0;
  let source = null;
  let ended = false;
  let retryDelay = 3000;
  let refreshTimer = null;
  let queue = Promise.resolve(); // arguments and refreshes apply in the order their events came

  function show(state, text) {
    main.dataset.stream = state;
    const label = document.querySelector("[data-connection]");
    if (label) label.textContent = text;
  }

  function isLast(kind, data) {
    return kind === "topic_cancelled" || (kind === "status_changed" && data && data.to === "completed");
  }

  function connect() {
    source = new EventSource(`${main.dataset.eventsUrl}?after=${lastId}`);
    source.onopen = () => {
      retryDelay = 3000;
      show("open", "· following live");
    };
    source.onerror = () => {
      if (ended) return;
      show("reconnecting", "· reconnecting…");
      if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // The browser gave up (an answer other than a stream: a 503, or 204 once the topic is over).
      // Look at the page again; unless it says the debate is over, try again later.
      source.close();
      queue = queue.then(refresh).then(() => {
        if (!ended) setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      });
    };
    for (const kind of KINDS) source.addEventListener(kind, onEvent);
  }

  function onEvent(event) {
    const seq = Number(event.lastEventId);
    if (seq && seq <= lastId) return;
    if (seq) lastId = seq;
    let data = null;
    try { data = JSON.parse(event.data); } catch (_) { /* a refresh shows it anyway */ }
    if (event.type === "argument_posted" && data) {
      queue = queue.then(() => addArgument(data));
    } else {
      scheduleRefresh();
    }
    if (isLast(event.type, data)) finish();
  }

  function finish() {
    ended = true;
    if (source) source.close();
    clearTimeout(refreshTimer);
    queue = queue.then(refresh).then(() => show("ended", ""));
  }

  function scheduleRefresh() {
    // Events come in bursts (a round closes, the next opens): one fetch for the burst.
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { queue = queue.then(refresh); }, 150);
  }

  async function refresh() {
    let response;
    try {
      response = await fetch(window.location.pathname, { headers: { Accept: "text/html" }, cache: "no-store" });
    } catch (_) {
      return; // the server is away; the stream's reconnect brings us back
    }
    if (response.status === 404) { // no longer public
      ended = true;
      if (source) source.close();
      show("ended", "· this debate is no longer public");
      return;
    }
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const name of REGIONS) {
      const fresh = page.querySelector(`[data-region="${name}"]`);
      const current = document.querySelector(`[data-region="${name}"]`);
      if (fresh && current) current.replaceWith(document.adoptNode(fresh));
    }
    const freshMain = page.querySelector("[data-topic-page]");
    if (freshMain && freshMain.dataset.live !== "true") {
      ended = true;
      if (source) source.close();
    }
    show(main.dataset.stream, ended ? "" : "· following live");
  }

  async function addArgument(argument) {
    if (document.getElementById(`argument-${argument.id}`)) return; // already on the page
    const list = document.querySelector(`#round-${argument.round_no} .arguments`);
    if (!list) { scheduleRefresh(); return; }
    let item = null;
    try {
      const response = await fetch(`${main.dataset.argumentsUrl}${argument.id}/`, { headers: { Accept: "text/html" } });
      if (response.ok) {
        const fragment = new DOMParser().parseFromString(await response.text(), "text/html");
        item = fragment.querySelector("li.argument");
      }
    } catch (_) { /* below: the text as it came */ }
    if (document.getElementById(`argument-${argument.id}`)) return; // a refresh brought it meanwhile
    if (item) {
      item = document.adoptNode(item);
    } else {
      // The fragment could not be had: the plain text, never parsed as HTML, until the next refresh.
      item = document.createElement("li");
      item.className = `argument camp-${argument.camp}`;
      item.id = `argument-${argument.id}`;
      const article = item.appendChild(document.createElement("article"));
      article.appendChild(document.createElement("header")).textContent = argument.camp;
      const text = article.appendChild(document.createElement("div"));
      text.className = "prose";
      text.textContent = argument.content;
    }
    item.classList.add("fresh");
    list.appendChild(item);
    const round = list.closest(".round");
    const empty = round && round.querySelector(":scope > .empty");
    if (empty) empty.remove();
    const count = document.querySelector("[data-argument-count]");
    if (count) count.textContent = String(Number(count.textContent) + 1);
  }

  connect();
})();
