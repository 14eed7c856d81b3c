// OMS customer order page: look an order up by number and e-mail or phone, follow it, and cancel,
// change the address or ask for a return when the order allows it.
// Plain ES2020, no build step. Nothing is stored (the contact is personal data) and nothing goes
// into the page URL; API text reaches the DOM through textContent only (see el()).
'use strict';

(() => {
  // The number and contact of the order on screen; the actions send them again.
  let current = null;

  const STATUS_TEXT = {
    received: 'We have received your order.',
    numbered: 'We have received your order.',
    approved: 'Your order has been accepted.',
    on_hold: 'Your order is being checked by our team.',
    rejected: 'We could not accept this order.',
    awaiting_payment: 'We are waiting for your payment.',
    out_of_stock: 'Some items are out of stock.',
    paid: 'Payment received; we are preparing your order.',
    ready_to_ship: 'Your order is packed and ready to ship.',
    shipped: 'Your order is on its way.',
    delivered: 'Your order has been delivered.',
    completed: 'Your order is complete.',
    cancelled: 'This order was cancelled.',
    expired: 'This order expired before it was paid.',
    return_requested: 'We have your return request.',
    returned: 'Your return has arrived.',
    refunded: 'Your money has been refunded.',
  };
  const CARRIERS = { sf: 'SF Express', zto: 'ZTO Express', yto: 'YTO Express', sto: 'STO Express', jd: 'JD Logistics', ems: 'EMS' };

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
  /** A time in the customer's own time zone. */
  function when(s) {
    if (!s) return '—';
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }
  const label = (s) => String(s || '—').replace(/_/g, ' ');
  function tone(status) {
    if (['delivered', 'completed', 'paid', 'shipped', 'ready_to_ship', 'approved', 'refunded'].includes(status)) return 'ok';
    if (['rejected', 'cancelled', 'expired', 'out_of_stock', 'exception', 'attempt_fail', 'returning'].includes(status)) return 'bad';
    if (['on_hold', 'awaiting_payment', 'return_requested', 'returned'].includes(status)) return 'warn';
    return '';
  }

  // ---------- messages ----------

  function showMessage(text, kind = 'info') {
    const box = $('#message');
    box.textContent = text;
    box.className = `status ${text ? kind : ''}`.trim();
  }

  // ---------- API ----------

  /** Fetches JSON without any credential; answers {ok, status, data}. */
  async function call(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      return { ok: false, status: 0, data: { detail: 'The service cannot be reached; check your connection and try again.' } };
    }
    let data = null;
    if ((res.headers.get('content-type') || '').includes('json')) {
      try { data = await res.json(); } catch { data = null; }
    }
    return { ok: res.ok, status: res.status, data: data || {} };
  }

  /** The text to show for a failed call. */
  function problemText(r, fallback) {
    if (r.status === 404) return 'No order with this number and contact.';
    if (r.status === 429) return 'Too many attempts, wait a minute.';
    const p = r.data || {};
    const reasons = Array.isArray(p.reasons) && p.reasons.length ? ` (${p.reasons.join('; ')})` : '';
    const detail = p.detail || p.title;
    return detail ? `${fallback}: ${detail}${reasons}.`.replace(/\.\.$/, '.') : `${fallback}; please try again.`;
  }

  const query = (number, contact) => `number=${encodeURIComponent(number)}&contact=${encodeURIComponent(contact)}`;

  // ---------- look-up ----------

  async function lookUp() {
    const number = $('#number').value.trim();
    const contact = $('#contact').value.trim();
    if (!number || !contact) {
      showMessage('Enter the order number and the e-mail address or phone number of the order.', 'error');
      return;
    }
    const button = $('#find');
    button.disabled = true;
    document.body.dataset.state = 'loading';
    showMessage('');
    const r = await call('GET', `/orders/lookup?${query(number, contact)}`);
    button.disabled = false;
    if (r.ok) {
      current = { number, contact };
      render(r.data);
      return;
    }
    current = null;
    $('#order').hidden = true;
    $('#order').replaceChildren();
    document.body.dataset.state = r.status === 404 ? 'not-found' : r.status === 429 ? 'rate-limited' : 'error';
    showMessage(problemText(r, 'The order could not be looked up'), r.status === 404 ? 'info' : 'error');
  }

  /** Posts an action with the order's number and contact; re-renders from the view it answers. */
  async function act(method, path, extra, button, done) {
    if (!current) return null;
    button.disabled = true;
    showMessage('');
    const r = await call(method, path, { number: current.number, contact: current.contact, ...extra });
    button.disabled = false;
    if (r.ok) {
      render(r.data);
      showMessage(done, 'ok');
    } else {
      showMessage(problemText(r, 'That did not work'), 'error');
    }
    // The answer is shown above the order; bring it into view (the form may have gone).
    if (r.ok || !(r.data && r.data.errors && r.data.errors.length)) $('#message').scrollIntoView({ block: 'nearest' });
    return r;
  }

  // ---------- rendering ----------

  const card = (id, title, ...children) => el('section', { class: 'card', id }, title ? el('h2', { text: title }) : null, ...children);

  function render(v) {
    const cur = (v.total && v.total.currency) || '';
    const can = v.can || {};
    const parts = [];

    // Summary: number, status, total, where it goes, invoice.
    const shipTo = v.ship_to || {};
    const place = [shipTo.city, shipTo.region, shipTo.country].filter(Boolean).join(', ');
    parts.push(card('summary', null,
      el('div', { class: 'order-head' },
        el('h2', { text: `Order ${v.number || ''}`.trim() }),
        el('span', { id: 'order-status', class: `badge big ${tone(v.status)}`.trim(), dataset: { status: v.status || '' }, text: label(v.status) })),
      el('p', { class: 'muted', text: STATUS_TEXT[v.status] || '' }),
      el('dl', { class: 'facts' },
        el('dt', { text: 'Placed' }), el('dd', { text: when(v.created_at) }),
        el('dt', { text: 'Total' }), el('dd', { id: 'order-total', text: v.total ? money(v.total.minor, v.total.currency) : '—' }),
        v.payment_due_at ? [el('dt', { text: 'Pay by' }), el('dd', { text: when(v.payment_due_at) })] : null,
        place ? [el('dt', { text: 'Ship to' }), el('dd', { id: 'ship-to', text: place })] : null,
        v.return_until && can.return ? [el('dt', { text: 'Return until' }), el('dd', { text: when(v.return_until) })] : null),
      el('div', { class: 'actions' },
        el('a', {
          id: 'invoice', href: `/orders/lookup/invoice?${query(current.number, current.contact)}`,
          target: '_blank', rel: 'noopener noreferrer', referrerpolicy: 'no-referrer', text: 'Printable invoice ↗',
        }))));

    // Items.
    const lines = v.lines || [];
    parts.push(card('items', 'Items', el('div', { class: 'table-wrap' }, el('table', null,
      el('thead', null, el('tr', null, el('th', { text: 'Item' }), el('th', { class: 'num', text: 'Qty' }),
        el('th', { class: 'num', text: 'Price' }), el('th', { class: 'num', text: 'Amount' }))),
      el('tbody', null, lines.map((l) => el('tr', null, el('td', { class: 'nowrap', text: l.sku }), el('td', { class: 'num', text: l.quantity }),
        el('td', { class: 'num', text: money(l.unit_price, cur) }),
        el('td', { class: 'num', text: money((l.unit_price || 0) * (l.quantity || 0) - (l.discount || 0), cur) })))),
      el('tfoot', null, el('tr', null, el('th', { colspan: 3, text: 'Total' }),
        el('th', { class: 'num', text: v.total ? money(v.total.minor, v.total.currency) : '—' })))))));

    // Shipments.
    const shipments = v.shipments || [];
    if (shipments.length) {
      parts.push(card('shipments', shipments.length > 1 ? 'Parcels' : 'Parcel', shipments.map((s) => el('div', { class: 'shipment' },
        el('div', { class: 'head' },
          el('strong', { class: 'carrier', text: CARRIERS[s.carrier] || String(s.carrier || 'Carrier').toUpperCase() }),
          el('span', { class: `badge tracking-status ${tone(s.status)}`.trim(), dataset: { status: s.status || '' }, text: label(s.status || 'pending') })),
        el('div', null, 'Tracking number: ', el('span', { class: 'tracking-number', text: s.tracking_number || 'not yet assigned' })),
        s.delivered_at ? el('div', { class: 'muted small', text: `Delivered ${when(s.delivered_at)}` })
          : s.last_event_at ? el('div', { class: 'muted small', text: `Last update ${when(s.last_event_at)}` }) : null))));
    }

    // History, oldest first; the last entry is where the order is now.
    const history = v.history || [];
    if (history.length) {
      parts.push(card('history', 'History', el('ol', { class: 'timeline' }, history.map((h) => el('li', null,
        el('div', { class: 'what', text: label(h.status) }),
        el('div', { class: 'when', text: when(h.at) }))))));
    }

    // Returns already asked for.
    const returns = v.returns || [];
    if (returns.length) {
      parts.push(card('returns', 'Returns', el('ul', { class: 'plain' }, returns.map((r) => el('li', { class: 'shipment' },
        el('div', null, el('strong', { text: (r.lines || []).map((l) => (Array.isArray(l) ? `${l[0]} × ${l[1]}` : `${l.sku} × ${l.quantity}`)).join(', ') || 'Whole order' })),
        r.reason ? el('div', { class: 'muted small', text: `Reason: ${r.reason}` }) : null,
        el('div', { class: 'muted small', text: `Requested ${when(r.requested_at)}${r.received_at ? ` · received ${when(r.received_at)}` : ' · not received yet'}` }))))));
    }

    if (can.cancel) parts.push(cancelCard());
    if (can.change_address) parts.push(addressCard(shipTo));
    if (can.return) parts.push(returnCard(lines));

    const section = $('#order');
    section.replaceChildren(...parts);
    section.hidden = false;
    document.body.dataset.state = 'found';
  }

  /** Cancel with an inline confirmation (no dialogs). */
  function cancelCard() {
    const confirmBox = el('div', { class: 'confirm-box', id: 'cancel-confirm-box', hidden: true },
      el('p', { text: 'Cancel this order? Anything you paid is refunded.' }),
      el('label', { for: 'cancel-reason', text: 'Reason (optional)' }),
      el('input', { id: 'cancel-reason', type: 'text', maxlength: 500 }),
      el('div', { class: 'actions' },
        el('button', {
          type: 'button', id: 'cancel-confirm', class: 'danger', text: 'Yes, cancel the order',
          onclick: (ev) => {
            const reason = $('#cancel-reason').value.trim();
            act('POST', '/orders/lookup/cancel', reason ? { reason } : {}, ev.currentTarget, 'Your order is cancelled.');
          },
        }),
        el('button', {
          type: 'button', id: 'cancel-keep', class: 'secondary', text: 'Keep my order',
          onclick: () => { confirmBox.hidden = true; $('#cancel').hidden = false; },
        })));
    return card('cancel-card', 'Cancel the order',
      el('p', { class: 'muted small', text: 'You can cancel until the order is shipped.' }),
      el('button', {
        type: 'button', id: 'cancel', class: 'danger', text: 'Cancel order',
        onclick: (ev) => { ev.currentTarget.hidden = true; confirmBox.hidden = false; $('#cancel-confirm').focus(); },
      }),
      confirmBox);
  }

  const ADDRESS_FIELDS = [
    ['name', 'Name', true], ['phone', 'Phone', false], ['country', 'Country (2 letters)', true],
    ['region', 'Region / province', true], ['city', 'City', true], ['line1', 'Street and number', true],
    ['line2', 'More address (optional)', false], ['postal_code', 'Postal code', false],
  ];

  /** The new delivery address; field errors from the answer appear under their fields. */
  function addressCard(shipTo) {
    const form = el('form', { id: 'address-form', class: 'fields', method: 'post', novalidate: true },
      ADDRESS_FIELDS.map(([name, text, required]) => el('div', { class: name === 'line1' || name === 'line2' ? 'wide' : null },
        el('label', { for: `address-${name}`, text }),
        el('input', {
          id: `address-${name}`, name, type: name === 'phone' ? 'tel' : 'text', required,
          value: shipTo[name] || '', maxlength: name === 'country' ? 2 : 200, autocomplete: 'off',
        }))),
      el('div', { class: 'wide' }, el('button', { type: 'submit', id: 'save-address', text: 'Save address' })));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearFieldErrors(form);
      const address = {};
      for (const [name] of ADDRESS_FIELDS) {
        const value = form.elements[name].value.trim();
        if (value) address[name] = name === 'country' ? value.toUpperCase() : value;
      }
      const r = await act('PUT', '/orders/lookup/shipping-address', { address }, $('#save-address'), 'The delivery address is changed.');
      if (r && !r.ok && showFieldErrors(form, r.data)) showMessage('Please check the marked fields.', 'error');
    });
    return card('address-card', 'Change the delivery address',
      el('p', { class: 'muted small', text: 'You can change the address until the order is shipped.' }), form);
  }

  function clearFieldErrors(form) {
    for (const n of form.querySelectorAll('.field-error')) n.remove();
    for (const n of form.querySelectorAll('.invalid')) { n.classList.remove('invalid'); n.removeAttribute('aria-invalid'); }
  }

  /**
   * Puts problem `errors[].field` (e.g. "address.city") under the matching inputs; true when every
   * error found its field (then the message above need not repeat them).
   */
  function showFieldErrors(form, problem) {
    const errors = (problem && problem.errors) || [];
    let first = null;
    let unmatched = 0;
    for (const e of errors) {
      const name = String(e.field || '').replace(/^address\./, '');
      const input = form.elements[name];
      if (!(input instanceof HTMLInputElement)) {
        unmatched += 1;
        continue;
      }
      input.classList.add('invalid');
      input.setAttribute('aria-invalid', 'true');
      input.after(el('div', { class: 'field-error', text: e.reason || 'is not valid' }));
      first = first || input;
    }
    if (first) first.focus();
    return first !== null && unmatched === 0;
  }

  /** A return of some or all items: a quantity per line (the whole line by default) and a reason. */
  function returnCard(lines) {
    const form = el('form', { id: 'return-form', method: 'post', novalidate: true },
      el('div', { class: 'table-wrap' }, el('table', null,
        el('thead', null, el('tr', null, el('th', { text: 'Item' }), el('th', { class: 'num', text: 'Ordered' }), el('th', { class: 'num', text: 'Return' }))),
        el('tbody', null, lines.map((l, i) => el('tr', null,
          el('td', { class: 'nowrap' }, el('label', { for: `return-qty-${i}`, text: l.sku })),
          el('td', { class: 'num', text: l.quantity }),
          el('td', { class: 'num' }, el('input', {
            id: `return-qty-${i}`, class: 'return-qty qty-input', type: 'number', inputmode: 'numeric', min: 0, max: l.quantity,
            step: 1, value: l.quantity, dataset: { sku: l.sku, max: l.quantity },
          }))))))),
      el('div', { class: 'mt' },
        el('label', { for: 'return-reason', text: 'Reason' }),
        el('input', { id: 'return-reason', name: 'reason', type: 'text', maxlength: 500, required: true, placeholder: 'e.g. damaged in transit' })),
      el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'request-return', text: 'Request return' })));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearFieldErrors(form);
      const reason = $('#return-reason').value.trim();
      if (!reason) {
        showMessage('Tell us why you return the items.', 'error');
        $('#return-reason').focus();
        return;
      }
      const bySku = new Map();
      for (const input of form.querySelectorAll('.return-qty')) {
        const qty = Number(input.value);
        const max = Number(input.dataset.max);
        if (!Number.isInteger(qty) || qty < 0 || qty > max) {
          showMessage(`Return between 0 and ${max} of ${input.dataset.sku}.`, 'error');
          input.focus();
          return;
        }
        if (qty > 0) bySku.set(input.dataset.sku, (bySku.get(input.dataset.sku) || 0) + qty);
      }
      if (!bySku.size) {
        showMessage('Choose at least one item to return.', 'error');
        return;
      }
      const returnLines = [...bySku].map(([sku, quantity]) => ({ sku, quantity }));
      act('POST', '/orders/lookup/return', { reason, lines: returnLines }, $('#request-return'),
        'We have your return request; you will hear from us about sending the items back.');
    });
    return card('return-card', 'Return items',
      el('p', { class: 'muted small', text: 'Choose how many of each item you send back.' }), form);
  }

  // ---------- wiring ----------

  $('#find-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    lookUp();
  });
})();
