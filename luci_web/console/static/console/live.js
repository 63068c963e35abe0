// Live updates (luci_web/live): one websocket per stream a page shows, and on each message a re-fetch of the
// fragments that belong to that stream.
//
// Streams: an element with data-live-cluster="<pk>" (ws/clusters/<pk>/), data-live-overview (ws/overview/) or
// data-live-operation="<uuid>" (ws/operations/<uuid>/). A fragment is an element with data-live-fragment="<url>";
// it belongs to the stream named by the nearest such attribute on itself or an ancestor, or, anywhere on the page,
// to the stream named by its own data-live-stream ("cluster-<pk>", "overview", "operation-<uuid>").
// A message re-fetches (GET, same-origin credentials, X-Requested-With) and swaps the innerHTML of each of its
// fragments; bursts coalesce (one fetch in flight per fragment, plus at most one more); a fragment holding the
// element being typed in is left alone until that element loses focus. After a swap: a `luci:updated` event.
// document.body.dataset.liveState is "connected" or "disconnected"; #live-indicator, if present, shows it.
(function () {
  "use strict";

  var STREAM_SELECTOR = "[data-live-cluster],[data-live-overview],[data-live-operation]";
  var MAX_BACKOFF_MS = 30000;
  var sockets = {}; // stream name -> {ws, tries, open}
  var fragments = new WeakMap(); // element -> {busy, again, deferred}

  function streamOf(el) {
    // The stream name of a stream element: "cluster-<pk>", "overview" or "operation-<uuid>"
    if (el.hasAttribute("data-live-cluster")) return "cluster-" + el.getAttribute("data-live-cluster");
    if (el.hasAttribute("data-live-overview")) return "overview";
    if (el.hasAttribute("data-live-operation")) return "operation-" + el.getAttribute("data-live-operation");
    return null;
  }

  function fragmentStream(el) {
    var named = el.getAttribute("data-live-stream");
    if (named) return named;
    var owner = el.closest(STREAM_SELECTOR);
    return owner ? streamOf(owner) : null;
  }

  function socketPath(stream) {
    if (stream === "overview") return "/ws/overview/";
    if (stream.indexOf("cluster-") === 0) return "/ws/clusters/" + encodeURIComponent(stream.slice(8)) + "/";
    if (stream.indexOf("operation-") === 0) return "/ws/operations/" + encodeURIComponent(stream.slice(10)) + "/";
    return null;
  }

  function streamsOnPage() {
    var names = {};
    document.querySelectorAll(STREAM_SELECTOR).forEach(function (el) {
      var s = streamOf(el);
      if (s) names[s] = true;
    });
    document.querySelectorAll("[data-live-stream][data-live-fragment]").forEach(function (el) {
      names[el.getAttribute("data-live-stream")] = true;
    });
    return Object.keys(names);
  }

  // -- connection state ------------------------------------------------------------------------------------------
  function showState() {
    var open = true;
    var any = false;
    Object.keys(sockets).forEach(function (s) {
      any = true;
      if (!sockets[s].open) open = false;
    });
    var state = any && open ? "connected" : "disconnected";
    document.body.dataset.liveState = state;
    var indicator = document.getElementById("live-indicator");
    if (indicator) {
      indicator.textContent = state === "connected" ? "live" : "reconnecting\u2026";
      indicator.title = state === "connected" ? "updates arrive as they happen" : "not receiving updates";
      indicator.classList.toggle("live-on", state === "connected");
      indicator.classList.toggle("live-off", state !== "connected");
    }
  }

  function connect(stream) {
    var path = socketPath(stream);
    if (!path) return;
    var entry = sockets[stream] || (sockets[stream] = { ws: null, tries: 0, open: false });
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + window.location.host + path);
    entry.ws = ws;
    ws.onopen = function () {
      var reconnected = entry.tries > 0;
      entry.tries = 0;
      entry.open = true;
      showState();
      if (reconnected) refreshStream(stream); // messages were missed while away
    };
    ws.onmessage = function () {
      refreshStream(stream);
    };
    ws.onclose = function () {
      entry.open = false;
      showState();
      entry.tries += 1;
      // bounded exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... at most 30 s between tries
      var delay = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, Math.min(entry.tries - 1, 16)));
      delay = delay / 2 + Math.random() * delay / 2;
      window.setTimeout(function () { connect(stream); }, delay);
    };
  }

  // -- fragments ---------------------------------------------------------------------------------------------------
  function fragmentsOf(stream) {
    var found = [];
    document.querySelectorAll("[data-live-fragment]").forEach(function (el) {
      if (fragmentStream(el) === stream) found.push(el);
    });
    return found;
  }

  function refreshStream(stream) {
    fragmentsOf(stream).forEach(refresh);
  }

  function typingIn(el) {
    var active = document.activeElement;
    if (!active || active === document.body || !el.contains(active)) return null;
    var tag = active.tagName;
    var editable = tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || active.isContentEditable;
    return editable ? active : null;
  }

  function stateOf(el) {
    var st = fragments.get(el);
    if (!st) {
      st = { busy: false, again: false, deferred: false };
      fragments.set(el, st);
    }
    return st;
  }

  function refresh(el) {
    var st = stateOf(el);
    if (st.busy) {
      st.again = true; // one more fetch after this one, never a queue
      return;
    }
    var focused = typingIn(el);
    if (focused) {
      if (!st.deferred) {
        st.deferred = true;
        focused.addEventListener("blur", function () {
          st.deferred = false;
          if (el.isConnected) refresh(el);
        }, { once: true });
      }
      return;
    }
    st.busy = true;
    st.again = false;
    fetch(el.getAttribute("data-live-fragment"), {
      credentials: "same-origin",
      headers: { "X-Requested-With": "XMLHttpRequest" },
      cache: "no-store",
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      if (!el.isConnected) return;
      if (typingIn(el)) { // the user started typing while the fetch ran: keep their input, try again on blur
        st.again = true;
        return;
      }
      el.innerHTML = html;
      el.dispatchEvent(new CustomEvent("luci:updated", { bubbles: true, detail: { stream: fragmentStream(el) } }));
    }).catch(function () {
      // the next message (or the reconnect) fetches again
    }).then(function () {
      st.busy = false;
      if (st.again && el.isConnected) refresh(el);
    });
  }

  function start() {
    var streams = streamsOnPage();
    if (!streams.length) return;
    streams.forEach(connect);
    showState();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
