// eknet bedside page: reads the daemon's API (status, model, results, the result and signal event
// streams), draws the 3x4 sheet at 25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid with the lead II
// rhythm strip and calibration pulses, lists findings, abstentions and measurements, shades a
// selected finding's attention, reconnects by itself (Last-Event-ID), and asks for the bearer
// token once when the daemon requires one. No libraries, no network beyond this daemon.
'use strict';

const RATE = 500;                 // samples per second
const PX_PER_MM = 4;              // CSS pixels per millimetre of paper
const MM_PER_S = 25;
const MM_PER_MV = 10;
const PANEL_S = 2.5;              // seconds per column of the 3x4 sheet
const PANEL_W = PANEL_S * MM_PER_S * PX_PER_MM;  // 250 px
const ROW_H = 30 * PX_PER_MM;     // 30 mm: +-1.5 mV around the baseline
const CAL_W = 10 * PX_PER_MM;     // margin holding the 1 mV calibration pulse
const WINDOW = 10 * RATE;         // samples in a window
const RING = 40 * RATE;           // samples kept per lead (the page can show a result's window)
const LEADS = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
const SHEET = [['I', 'aVR', 'V1', 'V4'], ['II', 'aVL', 'V2', 'V5'], ['III', 'aVF', 'V3', 'V6']];
const ELECTRODES = ['RA', 'LA', 'LL', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
const MEASURES = [
  ['hr_bpm', 'Heart rate', 'bpm'], ['p_ms', 'P duration', 'ms'], ['pr_ms', 'PR', 'ms'],
  ['qrs_ms', 'QRS', 'ms'], ['qt_ms', 'QT', 'ms'], ['qtc_bazett_ms', 'QTc (Bazett)', 'ms'],
  ['qtc_fridericia_ms', 'QTc (Fridericia)', 'ms'], ['p_axis_deg', 'P axis', 'deg'],
  ['qrs_axis_deg', 'QRS axis', 'deg'], ['t_axis_deg', 'T axis', 'deg'],
];

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem('eknet-token') || null,
  needToken: false,
  generation: 0,                  // bumps on reconnect-all (after a token is entered)
  rings: LEADS.map(() => new Int32Array(RING)),
  head: 0,                        // stream index one past the newest sample
  validFrom: 0,                   // first index since the last break
  haveSignal: false,
  leadOff: 0,                     // electrode bits of the newest frame
  lastSeq: 0,
  framesMissed: 0,
  result: null,                   // the latest result shown
  lastResultId: null,
  frozen: null,                   // {result, finding} while a finding is selected
  dirty: true,
  busyMs: 0,                      // time spent handling data and drawing
  startedAt: performance.now(),
};
const panels = [];                // {canvas, ctx, lead, col, rhythm, mark}

// ---------------------------------------------------------------- API

function headers(extra) {
  const h = Object.assign({ Accept: 'application/json' }, extra || {});
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  return h;
}

async function api(path) {
  const r = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (r.status === 401) { askToken(); throw new Error('token required'); }
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

function askToken(message) {
  state.needToken = true;
  $('token-form').hidden = false;
  $('token-error').textContent = message || (state.token ? 'that token was refused' : '');
  $('link').textContent = 'token required';
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('eknet-token', state.token);
  $('token-form').hidden = true;
  state.needToken = false;
  start();
});

// A server-sent event stream read with fetch (EventSource cannot send a bearer token): parses
// event/id/data lines, reconnects with backoff and Last-Event-ID (from lastId()).
async function stream(path, onEvent, lastId, gen) {
  let backoff = 1000;
  while (gen === state.generation && !state.needToken) {
    try {
      const extra = { Accept: 'text/event-stream' };
      const id = lastId && lastId();
      if (id != null) extra['Last-Event-ID'] = String(id);
      const r = await fetch(path, { headers: headers(extra), cache: 'no-store' });
      if (r.status === 401) { askToken(); return; }
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      setLink(true);
      backoff = 1000;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let ev = { event: 'message', data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== state.generation) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (ev.data.length) {
              const t0 = performance.now();
              try { onEvent(ev.event, ev.data.join('\n'), ev.id); } catch (e) { console.error(e); }
              state.busyMs += performance.now() - t0;
            }
            ev = { event: 'message', data: [], id: null };
            continue;
          }
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') ev.event = val;
          else if (field === 'data') ev.data.push(val);
          else if (field === 'id') ev.id = val;
        }
      }
    } catch (e) {
      console.warn(path, e);
    }
    if (gen !== state.generation || state.needToken) return;
    setLink(false);
    await new Promise((res) => setTimeout(res, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

function setLink(up) {
  document.body.dataset.link = up ? 'up' : 'down';
  $('link').textContent = up ? 'live' : 'reconnecting';
}

// ---------------------------------------------------------------- signal

function onSignal(kind, data) {
  if (kind === 'lagged') { breakSignal(); return; }
  if (kind !== 'signal') return;
  const f = JSON.parse(data);
  if (state.lastSeq && f.seq !== state.lastSeq + 1) state.framesMissed += f.seq - state.lastSeq - 1;
  const broken = f.gap_before || !state.haveSignal || f.start_index !== state.head ||
    (state.lastSeq && f.seq !== state.lastSeq + 1);
  state.lastSeq = f.seq_last;
  if (broken) state.validFrom = f.start_index;
  const n = f.leads[0].length;
  for (let l = 0; l < LEADS.length; l++) {
    const src = f.leads[f.lead_names.indexOf(LEADS[l])] || f.leads[l];
    const ring = state.rings[l];
    for (let k = 0; k < n; k++) ring[(f.start_index + k) % RING] = src[k] * f.uv_per_unit;
  }
  state.head = f.start_index + n;
  state.haveSignal = true;
  state.leadOff = f.lead_off;
  state.dirty = true;
}

function breakSignal() {
  state.validFrom = state.head;
  state.dirty = true;
}

function spoiled(bits) {
  const out = new Map();
  for (let b = 0; b < ELECTRODES.length; b++) {
    if (!(bits & (1 << b))) continue;
    if (b < 3) LEADS.forEach((l) => out.set(l, 'electrode ' + ELECTRODES[b] + ' off'));
    else out.set(ELECTRODES[b], 'electrode ' + ELECTRODES[b] + ' off');
  }
  return out;
}

// ---------------------------------------------------------------- sheet

// A cell of the sheet holding a canvas `w` CSS pixels wide, one row high, drawn at the screen's
// pixel density; returns the cell, the canvas and its context (scaled to CSS pixels).
function sheetCell(w, cellClass, canvasClass) {
  const cell = document.createElement('div');
  cell.className = cellClass;
  const canvas = document.createElement('canvas');
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(ROW_H * dpr);
  canvas.style.width = w + 'px';
  canvas.style.height = ROW_H + 'px';
  canvas.className = canvasClass;
  cell.append(canvas);
  $('sheet').append(cell);
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  return { cell, canvas, ctx };
}

function buildSheet() {
  const add = (lead, col, rhythm) => {
    const w = rhythm ? 4 * PANEL_W : PANEL_W;
    const { cell, canvas, ctx } = sheetCell(w, 'cell' + (rhythm ? ' rhythm' : ''), 'panel');
    canvas.dataset.lead = lead;
    canvas.dataset.samples = '0';
    if (rhythm) canvas.dataset.role = 'rhythm';
    const label = document.createElement('span');
    label.className = 'label';
    label.textContent = rhythm ? 'II (rhythm)' : lead;
    const mark = document.createElement('span');
    mark.className = 'mark';
    mark.hidden = true;
    cell.append(label, mark);
    panels.push({ canvas, ctx, lead, col, rhythm, mark, w });
  };
  const cal = () => {
    const { ctx } = sheetCell(CAL_W, 'cell', 'calibration');
    grid(ctx, CAL_W, ROW_H);
    // 1 mV for 200 ms (10 mm tall, 5 mm wide), from the baseline.
    const base = ROW_H / 2;
    const top = base - MM_PER_MV * PX_PER_MM;
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1.2;
    ctx.beginPath();
    ctx.moveTo(0, base); ctx.lineTo(2 * PX_PER_MM, base); ctx.lineTo(2 * PX_PER_MM, top);
    ctx.lineTo(7 * PX_PER_MM, top); ctx.lineTo(7 * PX_PER_MM, base); ctx.lineTo(CAL_W, base);
    ctx.stroke();
  };
  for (const row of SHEET) {
    cal();
    row.forEach((lead, col) => add(lead, col, false));
  }
  cal();
  add('II', 0, true);
}

function grid(ctx, w, h) {
  ctx.fillStyle = '#fff8f6';
  ctx.fillRect(0, 0, w, h);
  for (let mm = 0, x = 0; x <= w; mm++, x = mm * PX_PER_MM) {
    ctx.strokeStyle = mm % 5 === 0 ? '#f0a8a8' : '#fbdcdc';
    ctx.lineWidth = mm % 5 === 0 ? 0.9 : 0.5;
    ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, h); ctx.stroke();
  }
  for (let mm = 0, y = 0; y <= h; mm++, y = mm * PX_PER_MM) {
    ctx.strokeStyle = mm % 5 === 0 ? '#f0a8a8' : '#fbdcdc';
    ctx.lineWidth = mm % 5 === 0 ? 0.9 : 0.5;
    ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(w, y + 0.5); ctx.stroke();
  }
}

// The window shown: the last 10 s live, or a selected result's window.
function shownWindow() {
  if (state.frozen) {
    const w = state.frozen.result.window;
    if (w.start_index != null) return { start: w.start_index, frozen: true };
  }
  return { start: state.head - WINDOW, frozen: false };
}

function draw() {
  if (!state.dirty) return;
  state.dirty = false;
  const t0 = performance.now();
  const { start, frozen } = shownWindow();
  const oldest = Math.max(state.validFrom, state.head - RING);
  const off = frozen ? new Map() : spoiled(state.leadOff);
  const verdicts = new Map();
  const r = frozen ? state.frozen.result : state.result;
  if (r && r.quality) for (const q of r.quality) if (!q.ok) verdicts.set(q.lead, q.reason || 'failed quality');
  const focus = state.frozen && state.frozen.finding ? state.frozen.finding.attention : null;
  let missing = false;
  for (const p of panels) {
    const { ctx, w } = p;
    grid(ctx, w, ROW_H);
    const from = start + (p.rhythm ? 0 : p.col * PANEL_S * RATE);
    const count = p.rhythm ? WINDOW : PANEL_S * RATE;
    if (focus && focus.lead === p.lead) {
      const a = (focus.from_s * RATE + start - from) / RATE;
      const b = (focus.to_s * RATE + start - from) / RATE;
      const x0 = Math.max(0, a * MM_PER_S * PX_PER_MM);
      const x1 = Math.min(w, b * MM_PER_S * PX_PER_MM);
      if (x1 > x0) {
        ctx.fillStyle = 'rgba(194, 24, 91, 0.22)';
        ctx.fillRect(x0, 0, x1 - x0, ROW_H);
      }
    }
    const ring = state.rings[LEADS.indexOf(p.lead)];
    const base = ROW_H / 2;
    const yPerUv = MM_PER_MV * PX_PER_MM / 1000;
    const xPerSample = MM_PER_S * PX_PER_MM / RATE;
    ctx.strokeStyle = '#111';
    ctx.lineWidth = 1;
    ctx.beginPath();
    let drawn = 0;
    let pen = false;
    for (let k = 0; k < count; k++) {
      const idx = from + k;
      if (idx < oldest || idx >= state.head) { pen = false; continue; }
      const y = Math.max(0, Math.min(ROW_H, base - ring[idx % RING] * yPerUv));
      const x = k * xPerSample;
      if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
      drawn++;
    }
    ctx.stroke();
    if (drawn < count) missing = true;
    p.canvas.dataset.samples = String(drawn);
    const why = off.get(p.lead) || verdicts.get(p.lead);
    p.mark.hidden = !why;
    p.mark.textContent = why ? p.lead + ': ' + why : '';
    p.canvas.dataset.mark = why || '';
  }
  $('sheet-mode').textContent = frozen
    ? 'result ' + state.frozen.result.id + ': its 10 s window' + (missing ? ' (part of it is no longer in the page\'s buffer)' : '')
    : 'live: the last 10 s' + (missing && state.haveSignal ? ' (filling after a break)' : '');
  state.busyMs += performance.now() - t0;
  document.body.dataset.busyMs = state.busyMs.toFixed(1);
  document.body.dataset.elapsedMs = (performance.now() - state.startedAt).toFixed(0);
}

// ---------------------------------------------------------------- results

function fmt(v, unit) {
  if (v == null) return '-';
  return (unit === 'bpm' || unit === 'ms' || unit === 'deg') ? String(Math.round(v)) : String(v);
}

function showResult(r) {
  state.result = r;
  state.lastResultId = r.id;
  document.body.dataset.resultId = String(r.id);
  $('result-id').textContent = '#' + r.id;
  $('result-time').textContent = (r.window.start_time || '') + ' to ' + (r.window.end_time || '') +
    (r.classification ? ' - ' + r.classification.model_id + ', ' + r.classification.precision : '');
  const m = r.measurements || null;
  const hr = m && m.hr_bpm != null ? m.hr_bpm : r.heart_rate_bpm;
  $('hr').textContent = fmt(hr, 'bpm');
  $('hr').dataset.value = hr == null ? '' : String(hr);

  const list = $('findings');
  list.replaceChildren();
  if (r.classification) {
    const fs = r.classification.findings || [];
    if (!fs.length) {
      const li = document.createElement('li');
      li.className = 'none';
      li.textContent = 'No finding at or above its threshold';
      list.append(li);
    }
    for (const f of fs) {
      const li = document.createElement('li');
      li.dataset.code = f.code;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', 'false');
      const name = document.createElement('span');
      name.textContent = f.code + (f.description ? ' - ' + f.description : '');
      const score = document.createElement('span');
      score.className = 'score';
      score.textContent = 'score ' + f.score.toFixed(2) + ' / threshold ' + f.threshold.toFixed(2);
      li.append(name, score);
      li.addEventListener('click', () => select(r, f, li));
      list.append(li);
    }
  }
  const ab = $('abstention');
  ab.replaceChildren();
  if (r.outcome === 'abstained') {
    const head = document.createElement('li');
    head.textContent = 'Not classified:';
    ab.append(head);
    for (const why of r.reasons || []) {
      const li = document.createElement('li');
      li.className = 'reason';
      li.textContent = why;
      ab.append(li);
    }
  }
  const tb = $('measurements').tBodies[0];
  tb.replaceChildren();
  const unmeasured = new Map(((m && m.unmeasured) || []).map((u) => [u.quantity, u.reason]));
  for (const [key, label, unit] of MEASURES) {
    const tr = document.createElement('tr');
    tr.dataset.key = key;
    const v = m ? m[key] : (key === 'hr_bpm' ? r.heart_rate_bpm : null);
    const why = v == null ? (unmeasured.get(key) || (m ? 'not measured' : 'no measurements for this window')) : '';
    tr.innerHTML = '';
    const a = document.createElement('td'); a.textContent = label;
    const b = document.createElement('td'); b.textContent = fmt(v, unit) + (v == null ? '' : ' ' + unit);
    const c = document.createElement('td'); c.className = 'why'; c.textContent = String(why).replace(/_/g, ' ');
    tr.append(a, b, c);
    tb.append(tr);
  }
  const st = $('statements');
  st.replaceChildren();
  if (!((m && m.statements) || []).length) {
    const li = document.createElement('li');
    li.className = 'none';
    li.textContent = m ? 'none' : 'no measurements for this window';
    st.append(li);
  }
  for (const s of (m && m.statements) || []) {
    const li = document.createElement('li');
    li.dataset.code = s.code;
    li.textContent = s.text;
    st.append(li);
  }
  state.dirty = true;
}

function select(r, f, li) {
  const again = state.frozen && state.frozen.finding === f;
  document.querySelectorAll('#findings li').forEach((x) => x.setAttribute('aria-selected', 'false'));
  if (again) { live(); return; }
  li.setAttribute('aria-selected', 'true');
  state.frozen = { result: r, finding: f };
  $('live-button').hidden = false;
  state.dirty = true;
}

function live() {
  state.frozen = null;
  $('live-button').hidden = true;
  document.querySelectorAll('#findings li').forEach((x) => x.setAttribute('aria-selected', 'false'));
  state.dirty = true;
}
$('live-button').addEventListener('click', live);

function onResult(kind, data) {
  if (kind === 'lagged') { refreshLatest(); return; }
  if (kind !== 'result') return;
  const r = JSON.parse(data);
  if (!state.frozen) showResult(r); else { state.lastResultId = r.id; }
}

async function refreshLatest() {
  try {
    const r = await api('/v1/results/latest');
    if (!state.frozen) showResult(r);
  } catch (e) { /* none yet, or the token form is up */ }
}

// ---------------------------------------------------------------- status

async function pollStatus(gen) {
  while (gen === state.generation && !state.needToken) {
    try {
      const s = await api('/v1/status');
      const d = s.device || {};
      $('device-state').textContent = d.state || '-';
      $('device-rate').textContent = d.measured_rate_hz != null ? d.measured_rate_hz.toFixed(0) + ' Hz' : '-';
      $('device-gaps').textContent = d.gaps != null ? String(d.gaps) : '-';
      $('device-lost').textContent = d.lost_samples != null ? String(d.lost_samples) : '-';
      document.body.dataset.state = d.state || 'unknown';
    } catch (e) {
      if (state.needToken) return;
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

async function start() {
  const gen = ++state.generation;
  try {
    const m = await api('/v1/model');
    $('model-id').textContent = m.model_id;
    $('precision').textContent = m.precision;
  } catch (e) {
    if (state.needToken) return;
  }
  refreshLatest();
  pollStatus(gen);
  stream('/v1/stream', onResult, () => state.lastResultId, gen);
  stream('/v1/stream/signal', onSignal, null, gen);
}

buildSheet();
setInterval(draw, 100);
start();
