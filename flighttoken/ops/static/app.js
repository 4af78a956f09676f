// FlightToken ops dashboard. Vanilla JS, no build step: asks for a key, keeps it in sessionStorage,
// polls GET /v1/ops/summary and redraws. Every value is written with textContent (never as HTML).
"use strict";

(() => {
  const KEY = "flighttoken.ops.key";
  const $ = (id) => document.getElementById(id);
  const REASON_WORDS = {
    no_face: "No face", face_too_small: "Face too small", too_blurry: "Too blurry", too_dark: "Too dark",
    too_bright: "Too bright", head_turned: "Head turned", head_tilted: "Head tilted",
    low_detection_score: "Poor capture", tailgating: "Tailgating", no_match: "No match",
    ambiguous_match: "Ambiguous match", immigration_not_cleared: "Immigration not cleared",
    already_cleared: "Already cleared", already_boarded: "Already boarded",
    not_lounge_eligible: "Not lounge eligible", wrong_flight: "Wrong flight", gate_not_boarding: "Gate not boarding",
    flight_not_in_window: "Flight not in window", not_international: "Not international",
    token_ended: "Token ended", see_officer: "See officer", flight_closed: "Flight closed",
    not_a_touchpoint: "Not a touchpoint", state_changed: "State changed",
    no_token: "Boarding pass names no token", face_mismatch: "Face does not match boarding pass",
  };
  const TOUCHPOINT_WORDS = {
    bag_drop: "Bag drop", e_security_gate: "e-Security Gate", e_channel: "Immigration e-channel", lounge: "Lounge",
    gate: "Boarding gate",
  };
  // Why a gate agent boarded someone by hand (POST /v1/manual-boardings): boarded_manual_by_reason.
  const MANUAL_BOARDING_WORDS = {
    face_not_recognised: "Face not recognised", capture_refused: "Camera declined", no_token_face: "No face on token",
    device_fault: "Device fault", other: "Other",
  };

  let timer = null;
  let failures = 0;
  let refreshMs = 2000;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  const reasonWord = (r) => REASON_WORDS[r] || r.replaceAll("_", " ");
  const manualReasons = (f) => Object.entries(f.boarded_manual_by_reason || {})
    .map(([r, n]) => `${MANUAL_BOARDING_WORDS[r] || r.replaceAll("_", " ")} ${n}`).join(", ");
  const pct = (x) => `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;
  const ms = (x) => (x == null ? "–" : `${Math.round(x)} ms`);

  function clock(iso, timeZone) {
    return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", timeZone }).format(new Date(iso));
  }

  // The departure time, with "+1d" / "−1d" when it falls on another local day than today.
  function departure(iso, timeZone, today) {
    const day = (d) => new Intl.DateTimeFormat("en-CA", { timeZone }).format(d);
    const offset = Math.round((Date.parse(day(new Date(iso))) - Date.parse(day(today))) / 86400000);
    const suffix = offset > 0 ? ` +${offset}d` : offset < 0 ? ` −${-offset}d` : "";
    return clock(iso, timeZone) + suffix;
  }

  function showLogin(message) {
    stop();
    sessionStorage.removeItem(KEY);
    $("dashboard").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    $("scope").textContent = "";
    $("updated").textContent = "Not connected";
    $("dot").className = "dot";
    $("login-error").textContent = message || "";
    $("key").value = "";
    $("key").focus();
  }

  function stop() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function schedule(delay) {
    stop();
    timer = setTimeout(poll, delay);
  }

  async function poll() {
    stop();
    const key = sessionStorage.getItem(KEY);
    if (!key) return showLogin();
    let response;
    try {
      response = await fetch("/v1/ops/summary", {
        headers: { Authorization: `Bearer ${key}`, Accept: "application/json" }, cache: "no-store",
      });
    } catch (err) {
      return offline("Connection lost — retrying");
    }
    if (response.status === 401) return showLogin("That key was not accepted (unknown or disabled).");
    if (response.status === 403) return showLogin("This key cannot open the dashboard: use an ops or admin key.");
    if (!response.ok) return offline(`Service answered ${response.status} — retrying`);
    const summary = await response.json();
    failures = 0;
    refreshMs = Math.max(500, (summary.refresh_s || 2) * 1000);
    render(summary);
    schedule(refreshMs);
  }

  function offline(message) {
    failures += 1;
    $("dot").className = "dot stale";
    $("updated").textContent = message;
    schedule(Math.min(30000, refreshMs * 2 ** Math.min(failures, 4)));
  }

  function render(s) {
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("signout").hidden = false;
    $("scope").textContent = s.airline ? `${s.airline} flights` : "All airlines";
    $("dot").className = "dot live";
    $("updated").textContent = `Updated ${clock(s.generated_at, s.timezone)} (${s.timezone})`;
    $("day").textContent = new Intl.DateTimeFormat("en-GB", {
      weekday: "short", day: "numeric", month: "short", timeZone: s.timezone,
    }).format(new Date(s.generated_at));
    renderFlights(s);
    renderTouchpoints(s);
    renderPurges(s);
  }

  function renderFlights(s) {
    const list = $("flights");
    const today = new Date(s.generated_at);
    list.replaceChildren(...s.flights.map((f) => flightCard(f, s.timezone, today)));
    $("no-flights").hidden = s.flights.length > 0;
  }

  function count(field, label, value) {
    return el("span", {}, el("strong", { "data-field": field, text: String(value) }), ` ${label}`);
  }

  function flightCard(f, timeZone, today) {
    const expected = Math.max(f.expected, f.enrolled, f.boarded, 1);
    const bar = el("div", {
      class: "bar", role: "progressbar", "aria-label": `${f.flight} boarded`, "aria-valuemin": "0",
      "aria-valuemax": String(f.expected), "aria-valuenow": String(f.boarded),
      "aria-valuetext": `${f.boarded} boarded of ${f.enrolled} enrolled, ${f.expected} booked`,
    });
    const enrolledFill = el("div", { class: "fill enrolled" });
    const boardedFill = el("div", { class: "fill boarded" });
    enrolledFill.style.width = `${(100 * f.enrolled) / expected}%`;
    boardedFill.style.width = `${(100 * f.boarded) / expected}%`;
    bar.append(enrolledFill, boardedFill);

    const topReasons = Object.entries(f.referred_by_reason).slice(0, 3)
      .map(([r, n]) => `${reasonWord(r)} ${n}`).join(", ");
    return el("li", { class: "flight", "data-flight-id": f.flight_id },
      el("header", {},
        el("span", { class: "code", text: f.flight }),
        el("span", { class: "dest", text: f.destination }),
        el("span", { class: "time", text: departure(f.scheduled_departure, timeZone, today) }),
        el("span", { class: `state ${f.state}`, "data-field": "state", text: f.state }),
        el("span", { class: "gate", text: f.gate ? `Gate ${f.gate}` : "No gate" })),
      bar,
      el("div", { class: "counts" },
        count("boarded", "boarded", f.boarded),
        el("span", { class: "split", title: manualReasons(f) || "none boarded by hand",
                     text: `(${f.boarded_biometric} by face, ` },
          el("strong", { "data-field": "boarded_manual", text: String(f.boarded_manual) }), " manual)"),
        count("enrolled", "enrolled", f.enrolled),
        count("expected", f.booked == null ? "expected (no manifest)" : "booked", f.expected)),
      el("div", { class: "details" },
        el("span", { "data-field": "late_enrolled", text: `Late enrolled ${f.late_enrolled ?? 0}` }),
        el("span", { "data-field": "immigration_cleared", text: `Cleared ${f.immigration_cleared}` }),
        el("span", { "data-field": "in_lounge", text: `In lounge ${f.in_lounge}` }),
        el("span", { "data-field": "referred", class: f.referred ? "warn" : "",
                     text: `Referred ${f.referred}${topReasons ? ` (${topReasons})` : ""}` }),
        el("span", { "data-field": "opted_out", text: `Opted out ${f.opted_out}` })));
  }

  function renderTouchpoints(s) {
    const rows = s.touchpoints.map((t) => el("tr", { "data-touchpoint": t.touchpoint },
      el("th", { scope: "row", text: TOUCHPOINT_WORDS[t.touchpoint] || t.touchpoint }),
      el("td", { class: "num", text: String(t.decisions) }),
      el("td", { class: "num", "data-field": "refer_rate", text: pct(t.refer_rate) }),
      el("td", { class: "num", "data-field": "median_ms", text: ms(t.median_ms) }),
      el("td", { class: "num", "data-field": "p95_ms", text: ms(t.p95_ms) })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "No decisions yet." })));
    $("touchpoints").replaceChildren(...rows);

    const reasons = [];
    for (const t of s.touchpoints) {
      for (const [reason, n] of Object.entries(t.refer_reasons)) {
        reasons.push(el("li", {},
          el("span", { text: `${TOUCHPOINT_WORDS[t.touchpoint] || t.touchpoint}: ${reasonWord(reason)}` }),
          el("span", { class: "num", text: `${n} (${pct(t.decisions ? n / t.decisions : 0)})` })));
      }
    }
    if (!reasons.length) reasons.push(el("li", { class: "empty", text: "No refers." }));
    $("reasons").replaceChildren(...reasons);
  }

  function renderPurges(s) {
    const items = s.purges.map((p) => el("li", { "data-flight-id": p.flight_id },
      el("span", {}, el("strong", { text: p.flight }), ` ${p.state}`),
      el("span", { class: p.overdue ? "overdue" : "",
                   text: `${p.overdue ? "Overdue since" : "Due"} ${clock(p.due_at, s.timezone)} · ${p.templates} templates` })));
    if (!items.length) items.push(el("li", { class: "empty", text: "No purges due in the next 24 hours." }));
    $("purges").replaceChildren(...items);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      $("login-error").textContent = "";
      poll();
    });
    $("signout").addEventListener("click", () => showLogin());
    // A hidden tab stops polling; it catches up as soon as it is shown again.
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) stop();
      else if (sessionStorage.getItem(KEY)) poll();
    });
    if (sessionStorage.getItem(KEY)) poll();
    else showLogin();
  });
})();
