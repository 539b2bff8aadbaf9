// The kiosk's status bar: a clock, and a banner as soon as a poll fails or the board grows older than twice
// its interval; the next good swap clears it. Nothing here adds to the page as time passes: the board is
// swapped whole by htmx, and this script only rewrites a few texts in place.
(function () {
  "use strict";
  var status = document.getElementById("kiosk-status");
  var clock = document.getElementById("kiosk-clock");
  var lastGood = Date.now();
  var failingSince = null;
  var failure = "";

  function hhmmss(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function board() {
    return document.getElementById("board");
  }

  function intervalMs() {
    var b = board();
    return (b && Number(b.dataset.interval) || 20) * 1000;
  }

  // The server writes its times in UTC; a wall screen wants the time of the room.
  function localTimes() {
    document.querySelectorAll("time[data-local-time]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.textContent = hhmmss(d);
      }
    });
  }

  function show(text) {
    if (status.textContent !== text) {
      status.textContent = text;
    }
    status.hidden = false;
    document.body.classList.add("kiosk-stale");
  }

  function clear() {
    status.hidden = true;
    status.textContent = "";
    document.body.classList.remove("kiosk-stale");
  }

  function tick() {
    var now = new Date();
    clock.textContent = hhmmss(now);
    clock.setAttribute("datetime", now.toISOString());
    if (failingSince !== null) {
      show(failure + " since " + hhmmss(failingSince) + " — the board below is from " + hhmmss(new Date(lastGood)));
    } else if (now.getTime() - lastGood > 2 * intervalMs()) {
      show("Stale: no fresh data since " + hhmmss(new Date(lastGood)));
    } else {
      clear();
    }
  }

  function fail(reason) {
    if (failingSince === null) {
      failingSince = new Date();
    }
    failure = reason;
    tick();
  }

  document.addEventListener("htmx:afterSwap", function () {
    lastGood = Date.now();
    failingSince = null;
    localTimes();
    tick();
  });
  document.addEventListener("htmx:sendError", function () {
    fail("Portal unreachable");
  });
  document.addEventListener("htmx:timeout", function () {
    fail("Portal not answering");
  });
  document.addEventListener("htmx:responseError", function (event) {
    var code = event.detail.xhr ? event.detail.xhr.status : 0;
    if (code === 404) {
      // The kiosk link was revoked (or the team is gone): keep nothing of what it showed.
      var b = board();
      if (b) {
        var note = document.createElement("p");
        note.className = "kiosk-gone";
        note.textContent = "This board is no longer available.";
        b.replaceChildren(note);
      }
    }
    fail("Portal answered " + code);
  });

  localTimes();
  tick();
  setInterval(tick, 1000);
})();
