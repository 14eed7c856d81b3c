// OMS staff dashboard: reports, review queue, alerts, dead letters and order search.
// Plain ES2020, no build step. Every text that comes from the API reaches the DOM through
// textContent (see el()), never through innerHTML.
'use strict';

(() => {
  const TOKEN_KEY = 'oms.staff.token';
  const STATUSES = [
    'received', 'numbered', 'approved', 'on_hold', 'rejected', 'awaiting_payment', 'out_of_stock',
    'paid', 'ready_to_ship', 'shipped', 'delivered', 'completed', 'cancelled', 'expired',
    'return_requested', 'returned', 'refunded',
  ];
  const STAGES = {
    placed_to_paid: 'Placed → paid',
    paid_to_shipped: 'Paid → shipped',
    shipped_to_delivered: 'Shipped → delivered',
    placed_to_delivered: 'Placed → delivered',
  };
  const PALETTE = ['#2456c9', '#1c9a6c', '#e38b14', '#c2410c', '#7c3aed', '#0e7490', '#be185d', '#4d7c0f'];

  let token = null; // the staff key, kept in sessionStorage only
  let me = null; // {name, role} from /staff/me
  let loading = false;
  const charts = new Map(); // canvas id -> Chart

  // ---------- DOM helpers ----------

  const $ = (sel, root = document) => root.querySelector(sel);

  /** Makes an element; `text` sets textContent, `class`, `dataset`, on* listeners, else attributes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return node;
  }

  /**
   * A table in a box that scrolls sideways when needed. cols: [{label, num?, nowrap?, wide?}];
   * rows: arrays of cells (text or nodes). opts.stack: one small card per row on phones;
   * opts.rowClass(i): a class for row i.
   */
  function table(cols, rows, opts = {}) {
    const cls = (c) => [c.num && 'num', c.nowrap && 'nowrap', c.wide && 'wide'].filter(Boolean).join(' ') || null;
    const head = el('tr', null, cols.map((c) => el('th', { class: cls(c), scope: 'col', text: c.label })));
    const body = rows.map((cells, i) =>
      el('tr', { class: opts.rowClass ? opts.rowClass(i) : null },
        cells.map((cell, j) => el('td', { class: cls(cols[j] || {}), 'data-label': (cols[j] || {}).label }, cell ?? '—'))));
    return el('div', { class: opts.stack ? 'table-wrap stacked' : 'table-wrap' },
      el('table', null, el('thead', null, head), el('tbody', null, body)));
  }

  const empty = (text) => el('p', { class: 'empty', text });
  const fill = (node, ...children) => node.replaceChildren(...children.flat().filter((c) => c != null));

  // ---------- formatting ----------

  /** Digits after the decimal point of a currency (2 for CNY, 0 for JPY; 2 when unknown). */
  const digitsCache = new Map();
  function minorDigits(currency) {
    if (!currency) return 2;
    if (!digitsCache.has(currency)) {
      let digits = 2;
      try {
        digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
      } catch {
        digits = 2;
      }
      digitsCache.set(currency, digits);
    }
    return digitsCache.get(currency);
  }

  /** Minor units as major units with the currency code: "CNY 1,234.50" (two decimals; JPY none). */
  function money(minor, currency) {
    const n = Number(minor);
    if (minor == null || !Number.isFinite(n)) return '—';
    const digits = minorDigits(currency);
    const unit = 10 ** digits;
    const abs = Math.abs(Math.round(n));
    const whole = String(Math.floor(abs / unit)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    const frac = digits ? `.${String(abs % unit).padStart(digits, '0')}` : '';
    return `${currency ? currency + ' ' : ''}${n < 0 ? '-' : ''}${whole}${frac}`;
  }
  const moneyOf = (m) => (m && typeof m === 'object' ? money(m.minor, m.currency) : '—');
  const moneyLines = (map) => Object.entries(map || {}).map(([cur, minor]) => money(minor, cur));
  /** Money map as one line per currency, the code set small: for the KPI tiles. */
  const moneyTiles = (map) => Object.entries(map || {}).map(([cur, minor]) =>
    el('span', { class: 'line' }, el('span', { class: 'cur', text: cur }), money(minor, cur).slice(cur.length + 1)));
  const percent = (rate) => (rate == null || !Number.isFinite(Number(rate)) ? '—' : `${(rate * 100).toFixed(1)}%`);
  const hours = (min) => (min == null || !Number.isFinite(Number(min)) ? '—' : `${(min / 60).toFixed(1)} h`);
  const mins = (m) => (m == null || !Number.isFinite(Number(m)) ? '—' : Number(m).toLocaleString('en-US', { maximumFractionDigits: 1 }));
  const count = (n) => (n == null ? '—' : Number(n).toLocaleString('en-US'));
  /** RFC 3339 -> "2026-12-01 08:30" in UTC (reports count UTC days, so the whole page shows UTC). */
  function when(s) {
    if (!s) return '—';
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? String(s) : d.toISOString().slice(0, 16).replace('T', ' ');
  }
  const label = (status) => String(status || '—').replace(/_/g, ' ');
  function statusBadge(status, extra) {
    const tone = ['delivered', 'completed', 'paid', 'shipped', 'ready_to_ship', 'approved'].includes(status) ? 'ok'
      : ['rejected', 'cancelled', 'expired', 'out_of_stock'].includes(status) ? 'bad'
        : ['on_hold', 'awaiting_payment', 'return_requested', 'returned', 'refunded'].includes(status) ? 'warn' : '';
    return el('span', { class: `badge ${tone} ${extra || ''}`.trim(), dataset: { status: status || '' }, text: label(status) });
  }

  // ---------- status area ----------

  const statusBox = () => $('#status');
  function showStatus(text, kind = 'info') {
    statusBox().textContent = text;
    statusBox().className = `status ${kind}`;
    $('#status-bar').hidden = !text;
  }
  const clearStatus = () => showStatus('', '');

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, problem) {
      const p = problem || {};
      const reasons = Array.isArray(p.reasons) && p.reasons.length ? ` (${p.reasons.join('; ')})` : '';
      super(`${p.detail || p.title || `HTTP ${status}`}${reasons}`);
      this.status = status;
      this.problem = p;
    }
  }

  /** Calls the API with the staff key; answers the JSON body or throws ApiError (problem detail). */
  async function api(path, { method = 'GET', body } = {}) {
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, { detail: 'the server cannot be reached' });
    }
    let data = null;
    if ((res.headers.get('content-type') || '').includes('json')) {
      try { data = await res.json(); } catch { data = null; }
    }
    if (res.status === 401) signOut('The staff key was not accepted; sign in again.');
    if (!res.ok) throw new ApiError(res.status, data || { title: res.statusText });
    return data;
  }

  // ---------- sign-in ----------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    me = null;
    $('#app').hidden = true;
    $('#who').hidden = true;
    $('#signin').hidden = false;
    $('#token').value = '';
    if (message) showStatus(message, 'error');
    else clearStatus();
    $('#token').focus();
  }

  /** Checks the token with /staff/me, then shows the dashboard and loads it. */
  async function enter() {
    try {
      me = await api('/staff/me');
    } catch (e) {
      if (e.status !== 401) {
        $('#signin').hidden = false;
        showStatus(`Could not check the staff key: ${e.message}`, 'error');
      }
      return;
    }
    $('#who-name').textContent = me.name || 'staff';
    $('#who-role').textContent = me.role || '';
    $('#who').hidden = false;
    $('#signin').hidden = true;
    $('#app').hidden = false;
    clearStatus();
    await loadAll();
    document.body.dataset.ready = '1';
  }

  /** Token from #token=..., else sessionStorage, else the sign-in form. */
  function takeToken() {
    const hash = new URLSearchParams(location.hash.replace(/^#/, ''));
    const fromHash = hash.get('token');
    if (fromHash) {
      sessionStorage.setItem(TOKEN_KEY, fromHash);
      history.replaceState(null, '', location.pathname + location.search); // the key leaves the URL
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  // ---------- filters ----------

  const todayUtc = () => new Date().toISOString().slice(0, 10);
  function addDays(day, n) {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  /** Query string of the filters; `over` replaces some (the funnel's from/to). */
  function filterQuery(over = {}) {
    const q = new URLSearchParams();
    q.set('from', $('#from').value);
    q.set('to', $('#to').value);
    const channel = $('#channel').value.trim();
    const region = $('#region').value.trim();
    if (channel) q.set('channel', channel);
    if (region) q.set('region', region);
    for (const [k, v] of Object.entries(over)) q.set(k, v);
    return q.toString();
  }

  // ---------- charts ----------

  function countNonZero(datasets) {
    let n = 0;
    for (const ds of datasets) for (const v of ds.data) if (v != null && Number(v) !== 0) n += 1;
    return n;
  }

  /** (Re)draws a chart; records its non-zero points on the canvas and a note when it is empty. */
  function drawChart(id, config, emptyText = 'No orders in this range.') {
    const canvas = document.getElementById(id);
    const box = canvas.parentElement;
    let note = box.nextElementSibling;
    if (!note || !note.classList.contains('chart-note')) {
      note = el('p', { class: 'empty chart-note' });
      box.after(note);
    }
    if (charts.has(id)) charts.get(id).destroy();
    charts.delete(id);
    if (!window.Chart) {
      canvas.dataset.points = '0';
      note.textContent = 'The chart library did not load.';
      throw new Error('the chart library did not load');
    }
    const base = { animation: false, responsive: true, maintainAspectRatio: false };
    const chart = new window.Chart(canvas, { ...config, options: { ...base, ...(config.options || {}) } });
    charts.set(id, chart);
    const points = countNonZero(config.data.datasets);
    canvas.dataset.points = String(points);
    note.textContent = points ? '' : emptyText;
    note.hidden = points > 0;
  }

  const intTicks = { precision: 0 };
  function barOptions(horizontal, extraTooltip) {
    return {
      indexAxis: horizontal ? 'y' : 'x',
      plugins: {
        legend: { display: false },
        tooltip: extraTooltip ? { callbacks: { afterLabel: extraTooltip } } : {},
      },
      scales: {
        [horizontal ? 'x' : 'y']: { beginAtZero: true, ticks: intTicks },
        [horizontal ? 'y' : 'x']: { ticks: { autoSkip: false }, grid: { display: false } },
      },
    };
  }

  function statusColour(s) {
    if (['delivered', 'completed'].includes(s)) return '#1c9a6c';
    if (['rejected', 'cancelled', 'expired', 'out_of_stock'].includes(s)) return '#d64545';
    if (['on_hold', 'awaiting_payment', 'return_requested', 'returned', 'refunded'].includes(s)) return '#e38b14';
    return '#2456c9';
  }

  // ---------- sections ----------

  /** Runs a section's loader; a failure is reported as "Section: detail" (and noted in `body`). */
  async function section(name, fn, body) {
    try {
      await fn();
    } catch (e) {
      if (body && token) fill($(body), empty('Could not be loaded.'));
      throw new Error(`${name}: ${e.message}`);
    }
  }

  async function loadSummary() {
    const summary = await api(`/reports/summary?${filterQuery()}`);
    const kpis = summary.kpis || (await api(`/reports/kpis?${filterQuery()}`));
    renderKpis(summary, kpis || {});
    renderChannels(summary.by_channel || []);
    renderRegions(summary.by_region || []);
  }

  function renderKpis(summary, kpis) {
    const tile = (key, name, value, note) => el('div', { class: 'kpi', dataset: { kpi: key } },
      el('div', { class: 'label', text: name }),
      el('div', { class: 'value' }, value),
      note ? el('div', { class: 'note', text: note }) : null);
    const revenue = moneyTiles(summary.amount);
    const average = moneyLines(summary.average);
    fill($('#kpi-tiles'),
      tile('orders', 'Orders', count(summary.orders ?? kpis.orders), kpis.delivered != null ? `${count(kpis.delivered)} delivered` : null),
      tile('revenue', 'Revenue', revenue.length ? revenue : '—',
        average.length ? `average ${average.join(', ')}` : null),
      tile('processing', 'Avg processing time', hours(kpis.average_processing_minutes), 'placed to shipped'),
      tile('on-time', 'On-time delivery', percent(kpis.on_time_delivery_rate), null),
      tile('review', 'Manual review share', percent(kpis.manual_review_share), null),
      tile('returns', 'Return rate', percent(kpis.return_rate), null));
    $('#kpis-range').textContent = `${summary.from || $('#from').value} to ${summary.to || $('#to').value}`
      + `${summary.channel ? ` · ${summary.channel}` : ''}${summary.region ? ` · ${summary.region}` : ''}`;
  }

  function renderChannels(rows) {
    const sorted = [...rows].sort((a, b) => (b.orders || 0) - (a.orders || 0));
    drawChart('chart-channel', {
      type: 'bar',
      data: {
        labels: sorted.map((r) => r.channel),
        datasets: [{ label: 'Orders', data: sorted.map((r) => r.orders || 0), backgroundColor: sorted.map((_, i) => PALETTE[i % PALETTE.length]), borderRadius: 4 }],
      },
      options: barOptions(false, (item) => moneyLines(sorted[item.dataIndex].amount).join('\n')),
    });
  }

  function renderRegions(rows) {
    // The twelve largest regions; the rest are summed up as "other".
    const sorted = [...rows].sort((a, b) => (b.orders || 0) - (a.orders || 0));
    const top = sorted.slice(0, 12);
    const rest = sorted.slice(12);
    if (rest.length) {
      const amount = {};
      for (const r of rest) for (const [c, v] of Object.entries(r.amount || {})) amount[c] = (amount[c] || 0) + v;
      top.push({ region: `${rest.length} other`, orders: rest.reduce((s, r) => s + (r.orders || 0), 0), amount });
    }
    drawChart('chart-region', {
      type: 'bar',
      data: {
        labels: top.map((r) => r.region || 'unknown'),
        datasets: [{ label: 'Orders', data: top.map((r) => r.orders || 0), backgroundColor: '#0e7490', borderRadius: 4 }],
      },
      options: barOptions(true, (item) => moneyLines(top[item.dataIndex].amount).join('\n')),
    });
  }

  async function loadFunnel() {
    const today = todayUtc();
    const summary = await api(`/reports/summary?${filterQuery({ from: today, to: today })}`);
    const rank = (s) => (STATUSES.includes(s) ? STATUSES.indexOf(s) : STATUSES.length);
    const rows = (summary.by_status || []).filter((r) => r.orders).sort((a, b) => rank(a.status) - rank(b.status));
    drawChart('chart-funnel', {
      type: 'bar',
      data: {
        labels: rows.map((r) => label(r.status)),
        datasets: [{ label: 'Orders', data: rows.map((r) => r.orders), backgroundColor: rows.map((r) => statusColour(r.status)), borderRadius: 4 }],
      },
      options: barOptions(true, (item) => moneyLines(rows[item.dataIndex].amount).join('\n')),
    }, 'No orders placed today yet.');
  }

  async function loadTimeseries() {
    const interval = $('#interval').value;
    const data = await api(`/reports/timeseries?${filterQuery({ interval })}`);
    const points = data.points || [];
    const currencies = [...new Set(points.flatMap((p) => Object.keys(p.amount || {})))].sort();
    const datasets = [
      { type: 'bar', label: 'Orders', data: points.map((p) => p.orders || 0), backgroundColor: 'rgba(36, 86, 201, 0.75)', borderRadius: 3, yAxisID: 'y', order: 2 },
      ...currencies.map((cur, i) => ({
        type: 'line',
        label: `Revenue ${cur}`,
        data: points.map((p) => ((p.amount || {})[cur] || 0) / 10 ** minorDigits(cur)),
        currency: cur,
        borderColor: PALETTE[(i + 2) % PALETTE.length],
        backgroundColor: PALETTE[(i + 2) % PALETTE.length],
        pointRadius: points.length > 40 ? 0 : 2,
        cubicInterpolationMode: 'monotone',
        yAxisID: 'y1',
        order: 1,
      })),
    ];
    drawChart('chart-time', {
      data: { labels: points.map((p) => p.period), datasets },
      options: {
        interaction: { mode: 'index', intersect: false },
        plugins: {
          legend: { position: 'bottom', labels: { boxWidth: 12, sort: (a, b) => a.datasetIndex - b.datasetIndex } },
          tooltip: {
            callbacks: {
              label: (item) => (item.dataset.yAxisID === 'y1'
                ? `Revenue: ${money(Math.round(item.raw * 10 ** minorDigits(item.dataset.currency)), item.dataset.currency)}`
                : `Orders: ${count(item.raw)}`),
            },
          },
        },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true } },
          y: { beginAtZero: true, ticks: intTicks, title: { display: true, text: 'orders' } },
          y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, display: currencies.length > 0, title: { display: true, text: 'revenue' } },
        },
      },
    });
  }

  async function loadTimeliness() {
    const data = await api(`/reports/timeliness?${filterQuery()}`);
    const stages = data.stages || [];
    fill($('#timeliness-body'), stages.length
      ? table(
        [{ label: 'Stage' }, { label: 'Orders', num: true }, { label: 'Avg', num: true }, { label: 'p50', num: true }, { label: 'p90', num: true }, { label: 'p99', num: true }],
        stages.map((s) => [STAGES[s.stage] || label(s.stage), count(s.orders), mins(s.average_minutes), mins(s.p50_minutes), mins(s.p90_minutes), mins(s.p99_minutes)]))
      : empty('No data for this range.'));
  }

  const canAct = () => me && (me.role === 'operator' || me.role === 'admin');

  async function loadReviews() {
    const page = await api('/reviews?limit=100');
    const orders = page.orders || [];
    $('#reviews-count').textContent = orders.length ? `${orders.length}${page.next_cursor ? '+' : ''} waiting` : '';
    if (!orders.length) {
      fill($('#reviews-body'), empty('Nothing waits for a review.'));
      return;
    }
    const title = canAct() ? null : 'Needs the operator role';
    const button = (cls, text, o) => el('button', {
      type: 'button', class: `small ${cls}`, dataset: { id: o.id, number: o.number || '' }, disabled: !canAct(), title, text,
    });
    const rows = orders.map((o) => [
      el('strong', { title: o.id, text: o.number || o.id }),
      statusBadge(o.status),
      o.customer != null ? String(o.customer) : '—',
      o.channel || '—',
      moneyOf(o.total),
      (o.hold_reasons || []).length ? el('div', { class: 'chips' }, o.hold_reasons.map((r) => el('span', { class: 'chip', text: r }))) : '—',
      when(o.created_at),
      // Held orders are approved or rejected; the others (attention: a refused refund, a stuck
      // step) can only be retried.
      el('div', { class: 'actions' }, o.status === 'on_hold' || !o.status
        ? [button('good approve', 'Approve', o), button('danger reject', 'Reject', o)]
        : [button('secondary retry', 'Retry', o)]),
    ]);
    fill($('#reviews-body'), table(
      [{ label: 'Order', nowrap: true }, { label: 'Status' }, { label: 'Customer' }, { label: 'Channel' }, { label: 'Total', num: true },
        { label: 'Hold reasons', wide: true }, { label: 'Placed', nowrap: true }, { label: 'Decision' }],
      rows, { stack: true }));
  }

  /** Approve, reject or retry one order of the queue, then reload the queue. */
  async function decide(btn) {
    const decision = btn.classList.contains('approve') ? 'approve' : btn.classList.contains('reject') ? 'reject' : 'retry';
    const done = { approve: 'approved', reject: 'rejected', retry: 'sent again' }[decision];
    const name = btn.dataset.number || btn.dataset.id;
    for (const b of btn.closest('tr').querySelectorAll('button')) b.disabled = true;
    showStatus(`Order ${name}: sending ${decision}…`, 'info');
    try {
      const view = await api(`/orders/${encodeURIComponent(btn.dataset.id)}/review`, {
        method: 'POST', body: { decision, note: 'from the dashboard' },
      });
      showStatus(`Order ${view.number || name} ${done}; its status is now ${label(view.status)}.`, 'ok');
    } catch (e) {
      showStatus(`Could not ${decision} order ${name}: ${e.message}`, 'error');
    }
    try {
      await loadReviews();
    } catch (e) {
      showStatus(`${statusBox().textContent}\nReview queue: ${e.message}`, 'error');
    }
  }

  async function loadAlerts() {
    const data = await api('/alerts');
    const alerts = Array.isArray(data) ? data : (data && data.alerts) || [];
    fill($('#alerts-body'), alerts.length
      ? table(
        [{ label: 'SKU', nowrap: true }, { label: 'Warehouse' }, { label: 'Available', num: true }, { label: 'Safety', num: true }, { label: 'Raised', nowrap: true }],
        alerts.map((a) => [a.sku, a.warehouse, count(a.available), count(a.safety), when(a.raised_at)]),
        { stack: true, rowClass: (i) => (Number(alerts[i].available) <= 0 ? 'bad' : null) })
      : empty('No low-stock alerts.'));
  }

  async function loadDeadLetters() {
    const data = await api('/dead-letters');
    const queues = Array.isArray(data) ? data : (data && data.queues) || [];
    if (!queues.length) {
      fill($('#dead-letters-body'), empty('No queues reported.'));
      return;
    }
    const total = queues.reduce((s, q) => s + (Number(q.dead_letters) || 0), 0);
    fill($('#dead-letters-body'),
      el('p', { class: total ? 'status error' : 'status ok', text: total ? `${count(total)} message(s) need attention.` : 'All queues are clear.' }),
      el('ul', { class: 'plain queues' }, queues.map((q) => el('li', { class: Number(q.dead_letters) ? 'bad' : null, dataset: { queue: q.queue } },
        el('span', { text: q.queue }),
        el('span', { class: `badge ${Number(q.dead_letters) ? 'bad' : 'ok'}`, text: count(q.dead_letters) })))));
  }

  /** Loads every section at once; failures are listed in the status area. */
  async function loadAll() {
    if (loading) return;
    if ($('#from').value > $('#to').value) {
      showStatus('"From" must not be after "To".', 'error');
      return;
    }
    loading = true;
    $('#refresh').disabled = true;
    const results = await Promise.allSettled([
      section('Key figures', loadSummary, '#kpi-tiles'),
      section('Today by status', loadFunnel),
      section('Over time', loadTimeseries),
      section('Timeliness', loadTimeliness, '#timeliness-body'),
      section('Review queue', loadReviews, '#reviews-body'),
      section('Low-stock alerts', loadAlerts, '#alerts-body'),
      section('Dead letters', loadDeadLetters, '#dead-letters-body'),
    ]);
    loading = false;
    $('#refresh').disabled = false;
    if (!token) return; // signed out on the way (401)
    const errors = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
    if (errors.length) showStatus(`Some parts could not be loaded:\n${errors.join('\n')}`, 'error');
  }

  // ---------- search and the order panel ----------

  async function search() {
    const q = $('#search-q').value.trim();
    const list = $('#search-results');
    if (!q) return;
    fill(list, el('li', { class: 'empty', text: 'Searching…' }));
    try {
      const data = await api(`/orders/search?q=${encodeURIComponent(q)}`);
      const orders = (data && data.orders) || [];
      fill(list, orders.length ? orders.map((o) => el('li', null,
        el('a', { href: '#', dataset: { id: o.id } },
          el('span', { class: 'num', text: o.number || o.id }),
          statusBadge(o.status),
          el('span', { class: 'muted', text: [o.customer, o.channel, moneyOf(o.total), when(o.created_at)].filter((x) => x && x !== '—').join(' · ') }))))
        : el('li', { class: 'empty', text: 'No orders match.' }));
    } catch (e) {
      fill(list);
      showStatus(`Search: ${e.message}`, 'error');
    }
  }

  async function openOrder(id) {
    const panel = $('#order');
    panel.hidden = false;
    fill($('#order-body'), empty('Loading the order…'));
    panel.scrollIntoView({ block: 'start' });
    try {
      const order = await api(`/orders/${encodeURIComponent(id)}`);
      renderOrder(order);
      panel.scrollIntoView({ block: 'start' });
    } catch (e) {
      fill($('#order-body'), empty('The order could not be loaded.'));
      showStatus(`Order ${id}: ${e.message}`, 'error');
    }
  }

  function facts(pairs) {
    return el('dl', { class: 'facts' }, pairs.filter(([, v]) => v != null && v !== '' && v !== '—')
      .map(([k, v]) => [el('dt', { text: k }), el('dd', null, v)]));
  }

  function renderOrder(o) {
    const cur = (o.total && o.total.currency) || '';
    const c = o.customer || {};
    const a = o.shipping_address || {};
    const charges = o.charges || {};
    const ledger = o.ledger || {};
    const parts = [];
    const block = (title, node) => el('div', null, el('h3', { text: title }), node);

    parts.push(el('div', { class: 'order-head' },
      el('h2', { id: 'order-number', text: `Order ${o.number || '(no number yet)'}` }),
      statusBadge(o.status, 'big'),
      el('button', { type: 'button', class: 'link', id: 'order-close', text: 'Close', onclick: () => { $('#order').hidden = true; } })));

    parts.push(el('div', { class: 'grid' },
      block('Order', facts([
        ['Id', o.id], ['Channel', o.channel], ['External id', o.external_id], ['Placed', when(o.created_at)],
        ['Updated', when(o.updated_at)], ['Payment', o.payment_method], ['Total', moneyOf(o.total)],
        ['Shipping fee', charges.shipping_fee ? money(charges.shipping_fee, cur) : null],
        ['Tax', charges.tax ? money(charges.tax, cur) : null],
        ['Order discount', charges.order_discount ? money(charges.order_discount, cur) : null],
        ['Discount code', o.discount_code], ['Payment due', o.payment_due_at && when(o.payment_due_at)],
        ['Delivered', o.delivered_at && when(o.delivered_at)], ['Next look', o.due_at && when(o.due_at)],
        ['Hold reasons', (o.hold_reasons || []).join('; ')], ['Attention', (o.attention || []).join('; ')],
      ])),
      block('Customer', facts([['Name', c.name], ['Id', c.id], ['E-mail', c.email], ['Phone', c.phone]])),
      block('Ship to', facts([
        ['Name', a.name], ['Phone', a.phone],
        ['Address', [a.line1, a.line2].filter(Boolean).join(', ')],
        ['City', [a.postal_code, a.city].filter(Boolean).join(' ')], ['Region', [a.region, a.country].filter(Boolean).join(', ')],
      ]))));

    const lines = o.lines || [];
    parts.push(block('Lines', lines.length ? table(
      [{ label: 'SKU', nowrap: true }, { label: 'Qty', num: true }, { label: 'Unit price', num: true }, { label: 'Discount', num: true }, { label: 'Amount', num: true }],
      lines.map((l) => [l.sku, count(l.quantity), money(l.unit_price, cur), l.discount ? money(l.discount, cur) : '—',
        money((l.unit_price || 0) * (l.quantity || 0) - (l.discount || 0), cur)]), { stack: true }) : empty('No lines.')));

    const timeline = o.timeline || [];
    parts.push(block('Timeline', timeline.length ? table(
      [{ label: 'When', nowrap: true }, { label: 'From' }, { label: 'To' }, { label: 'By' }, { label: 'Reason', wide: true }],
      timeline.map((t) => [when(t.at), t.from ? label(t.from) : '—', t.to ? statusBadge(t.to) : '—',
        t.actor ? [t.actor.kind, t.actor.name].filter(Boolean).join(': ') : '—', t.reason || t.note || '—']), { stack: true }) : empty('No entries.')));

    const payments = ledger.payments || [];
    const refunds = ledger.refunds || [];
    parts.push(block('Payments', payments.length ? table(
      [{ label: 'Provider' }, { label: 'Payment id' }, { label: 'Source' }, { label: 'Amount', num: true }, { label: 'At', nowrap: true }],
      payments.map((p) => [p.provider, p.payment_id, p.source, moneyOf(p.amount), when(p.at)]), { stack: true }) : empty('No payments.')));
    parts.push(block('Refunds', refunds.length ? table(
      [{ label: 'Refund id' }, { label: 'Provider' }, { label: 'Amount', num: true }, { label: 'State' }, { label: 'Reason' }, { label: 'Requested' }],
      refunds.map((r) => [r.id, r.provider, moneyOf(r.amount), r.failure ? `${r.state}: ${r.failure}` : r.state, r.reason, when(r.requested_at)]),
      { stack: true, rowClass: (i) => (refunds[i].state === 'failed' ? 'bad' : null) }) : empty('No refunds.')));

    const shipments = o.shipments || [];
    parts.push(block('Shipments', shipments.length ? table(
      [{ label: 'Warehouse' }, { label: 'Carrier' }, { label: 'Tracking' }, { label: 'Status' }, { label: 'Handed over', nowrap: true },
        { label: 'Delivered', nowrap: true }, { label: 'Cost', num: true }],
      shipments.map((s) => [s.warehouse, s.carrier, s.tracking_number, s.status ? label(s.status) : '—', when(s.handed_over_at),
        when(s.delivered_at), s.merged_into ? `in ${s.merged_into}` : money(s.cost, cur)]), { stack: true }) : empty('Not shipped yet.')));

    const returns = o.returns || [];
    if (returns.length) {
      parts.push(block('Returns', table(
        [{ label: 'Return' }, { label: 'Lines' }, { label: 'Reason' }, { label: 'Requested' }, { label: 'Received' }, { label: 'Value', num: true }],
        returns.map((r) => [r.id, (r.lines || []).map((l) => (Array.isArray(l) ? `${l[0]} × ${l[1]}` : `${l.sku} × ${l.quantity}`)).join(', '),
          r.reason, when(r.requested_at), r.received_at ? when(r.received_at) : 'not yet', r.value != null ? money(r.value, cur) : '—']), { stack: true })));
    }

    const allocations = o.allocations || [];
    if (allocations.length) {
      parts.push(block('Stock allocations', table(
        [{ label: 'Warehouse' }, { label: 'State' }, { label: 'Lines' }],
        allocations.map((al) => [al.warehouse, al.state, (al.lines || []).map((l) => `${l.sku} × ${l.quantity}`).join(', ')]), { stack: true })));
    }

    const effects = o.pending_effects || [];
    if (effects.length) {
      parts.push(block('Pending effects', table(
        [{ label: 'Kind' }, { label: 'Due' }, { label: 'Attempts', num: true }, { label: 'Last error' }],
        effects.map((e) => [(e.kind && e.kind.type) || '—', when(e.due_at), count(e.attempts), e.last_error || '—']), { stack: true })));
    }

    fill($('#order-body'), el('div', { class: 'stack', dataset: { number: o.number || '', id: o.id || '' } }, parts));
  }

  // ---------- wiring ----------

  function init() {
    const today = todayUtc();
    $('#to').value = today;
    $('#from').value = addDays(today, -29); // 30 days including today

    $('#signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = $('#token').value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      token = value;
      $('#token').value = '';
      enter();
    });
    $('#sign-out').addEventListener('click', () => signOut());
    $('#status-close').addEventListener('click', () => clearStatus());
    $('#filter-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearStatus();
      loadAll();
    });
    $('#interval').addEventListener('change', () => section('Over time', loadTimeseries).catch((e) => showStatus(e.message, 'error')));
    $('#reviews-body').addEventListener('click', (ev) => {
      const btn = ev.target.closest('button.approve, button.reject, button.retry');
      if (btn && !btn.disabled) decide(btn);
    });
    $('#search-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      search();
    });
    $('#search-results').addEventListener('click', (ev) => {
      const link = ev.target.closest('a[data-id]');
      if (!link) return;
      ev.preventDefault();
      openOrder(link.dataset.id);
    });

    if (window.Chart) {
      window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
      window.Chart.defaults.color = '#5f6b7d';
    }

    token = takeToken();
    if (token) enter();
    else signOut();
  }

  init();
})();
