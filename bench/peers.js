// Times JavaScript circuit breakers on cb_bench's workload: a protected no-op call in
// CLOSED (success) and in OPEN (rejected), beside a direct call of the same function.
// usage: node peers.js OUT.json [min_time_seconds] [repetitions]
'use strict';
const fs = require('fs');
const CircuitBreaker = require('opossum');
// cockatiel 4 is an ES module only (no CommonJS build), so it is loaded with import() in main().

const [out, minTime = '0.2', repetitions = '5'] = process.argv.slice(2);
const HOUR_MS = 3600 * 1000;
let sink = 0;

function noop() { return 0; }
function fail() { throw new Error('dependency down'); }

async function timed(batch, n) {
  const t0 = process.hrtime.bigint();
  await batch(n);
  return Number(process.hrtime.bigint() - t0);
}

// Google Benchmark's calibration: grow n until one batch lasts min_time, then time
// `repetitions` batches of n calls; the median ns per call is the figure.
async function measure(batch) {
  const target = Number(minTime) * 1e9;
  let n = 1;
  for (let ns = await timed(batch, n); ns < target; ns = await timed(batch, n)) {
    const m = ns / target > 0.1 ? (target * 1.4) / Math.max(ns, 1) : 10;
    n = Math.max(Math.round(m * n), n + 1);
  }
  const perCall = [];
  for (let i = 0; i < Number(repetitions); i++) perCall.push((await timed(batch, n)) / n);
  const sorted = [...perCall].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { iterations: n, repetitions_ns: perCall, median_ns: median };
}

// Each call must be rejected: a breaker that lets one through is not measuring a reject.
async function rejectAll(call, n) {
  for (let i = 0; i < n; i++) {
    let admitted = true;
    try { await call(); } catch (e) { admitted = false; }
    if (admitted) throw new Error('open breaker admitted a call');
  }
}

async function main() {
  const { circuitBreaker, handleAll, ConsecutiveBreaker, CircuitState } = await import('cockatiel');
  const version = (pkg) => require(`${pkg}/package.json`).version;
  const results = [];
  const add = async (peer, op, batch) => results.push({ peer, op, ...(await measure(batch)) });

  await add('node', 'direct', async (n) => { for (let i = 0; i < n; i++) sink += noop(); });

  // timeout: false leaves out opossum's per-call timer, which cb.h has no counterpart for.
  const closed = new CircuitBreaker(noop, { timeout: false, resetTimeout: HOUR_MS });
  await add(`opossum ${version('opossum')}`, 'closed_success',
    async (n) => { for (let i = 0; i < n; i++) sink += await closed.fire(); });
  const open = new CircuitBreaker(noop, { timeout: false, resetTimeout: HOUR_MS });
  open.open();
  await add(`opossum ${version('opossum')}`, 'open_reject', (n) => rejectAll(() => open.fire(), n));

  const options = { halfOpenAfter: HOUR_MS, breaker: new ConsecutiveBreaker(5) };
  const policy = circuitBreaker(handleAll, options);
  await add(`cockatiel ${version('cockatiel')}`, 'closed_success',
    async (n) => { for (let i = 0; i < n; i++) sink += await policy.execute(noop); });
  const tripped = circuitBreaker(handleAll, { ...options, breaker: new ConsecutiveBreaker(5) });
  for (let i = 0; i < 5; i++) await tripped.execute(fail).catch(() => {});
  if (tripped.state !== CircuitState.Open) throw new Error('cockatiel breaker did not open');
  await add(`cockatiel ${version('cockatiel')}`, 'open_reject',
    (n) => rejectAll(() => tripped.execute(noop), n));

  if (closed.opened || policy.state !== CircuitState.Closed) throw new Error('a breaker tripped');
  const doc = { runtime: `node ${process.version}`, min_time: Number(minTime), sink, results };
  fs.writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
  for (const r of results) {
    console.log(`${r.peer.padEnd(18)} ${r.op.padEnd(15)} ${r.median_ns.toFixed(1)} ns`);
  }
  closed.shutdown();
  open.shutdown();
}

main().catch((e) => { console.error(`peers.js: ${e.stack || e}`); process.exit(1); });
