// autoreply console: live inbox rows (bulk ticks kept), select all, the prohibited-phrase check, inserting scripts.
// Plain JavaScript, no libraries; every page works without it except the live refresh.
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf") || "";

  // Inbox: poll the rows fragment with the page's own filters.
  var queue = document.getElementById("queue");
  if (queue) {
    var live = document.getElementById("live");
    var every = parseInt(queue.getAttribute("data-every"), 10) || 3000;
    var refresh = function () {
      fetch(queue.getAttribute("data-rows-url") + window.location.search, {
        headers: { Accept: "text/html" }, credentials: "same-origin"
      }).then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("signed out"); }
        return r.text();
      }).then(function (html) {
        // Keep the ticks of the bulk selection across the refresh.
        var ticked = {};
        queue.querySelectorAll("input[name=ticket]:checked").forEach(function (box) {
          ticked[box.value] = true;
        });
        queue.innerHTML = html;  // rendered and escaped by the server
        queue.querySelectorAll("input[name=ticket]").forEach(function (box) {
          box.checked = !!ticked[box.value];
        });
        if (live) {
          var now = new Date().toLocaleTimeString();
          live.textContent = live.getAttribute("data-label").replace("{time}", now);
        }
      }).catch(function () {}).then(function () { window.setTimeout(refresh, every); });
    };
    window.setTimeout(refresh, every);
  }

  // Inbox: one box ticks or clears every row for the bulk actions.
  var all = document.getElementById("select-all");
  if (all && queue) {
    all.addEventListener("change", function () {
      queue.querySelectorAll("input[name=ticket]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  // Ticket: check the draft for prohibited phrases as the agent types.
  var text = document.getElementById("reply-text");
  var warning = document.getElementById("phrase-warning");
  if (text && warning) {
    var timer = null;
    var check = function () {
      fetch(text.getAttribute("data-check-url"), {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json",
                   "X-CSRF-Token": csrf },
        body: JSON.stringify({ text: text.value })
      }).then(function (r) { return r.json(); }).then(function (body) {
        if (body.phrase) {
          warning.textContent = warning.getAttribute("data-label").replace("{phrase}", body.phrase);
          warning.hidden = false;
          warning.setAttribute("data-phrase", body.phrase);
        } else {
          warning.hidden = true;
          warning.removeAttribute("data-phrase");
        }
      }).catch(function () {});
    };
    text.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(check, 250);
    });
    if (text.value) { check(); }
  }

  // Ticket: insert a standard answer (话术) into the reply box, to edit before sending.
  document.querySelectorAll("button.insert").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!text) { return; }
      var answer = button.getAttribute("data-answer") || "";
      var start = text.selectionStart || 0, end = text.selectionEnd || 0;
      text.value = text.value.slice(0, start) + answer + text.value.slice(end);
      text.focus();
      text.dispatchEvent(new Event("input"));
    });
  });
})();
