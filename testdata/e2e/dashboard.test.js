// The dashboard's history and a file's timeline in a real browser, on real
// data: files uploaded through the real binary's tus endpoint, delivered
// to one webhook receiver that answers 200 and one that answers 500. Each
// chart must draw what the API says happened: a bar per hour, each hour's
// values, the labelled maximum, the endpoints' success rates, p95 and the
// moment the failing one started failing, and on the file page a mark per
// event and attempt. Screenshots go to build/e2e/screenshots/dashboard-*.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { launchBrowser, screenshotter, startPortal, startReceiver } from './harness.js'

const hourMS = 3600 * 1000
/** hourOf is the start of t's UTC hour as the charts write it (RFC 3339). */
const hourOf = (t) => new Date(Math.floor(Date.parse(t) / hourMS) * hourMS).toISOString().replace('.000Z', 'Z')
const countBy = (items, key, value = () => 1) => {
  const m = new Map()
  for (const it of items) m.set(key(it), (m.get(key(it)) || 0) + value(it))
  return m
}

test('dashboard history and file timeline in headless Chromium', { timeout: 240_000 }, async (t) => {
  // One quick retry, then a delivery to the broken receiver is failed.
  const portal = await startPortal({ args: ['--allow-private-endpoints', '--delivery-retry-schedule', '1s'] })
  const good = await startReceiver()
  const bad = await startReceiver()
  bad.broken = true
  const context = await launchBrowser()
  const shot = screenshotter('dashboard')
  const consoleErrors = []
  const page = context.pages()[0] || await context.newPage()
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(`${page.url()}: ${msg.text()}`) })
  page.on('pageerror', (err) => consoleErrors.push(`${page.url()}: uncaught ${err.message}`))
  const base = portal.base
  t.after(async () => {
    await context.close().catch(() => {})
    await portal.stop()
    await good.close()
    await bad.close()
  })

  // The API as the admin (a token issued with the password).
  const basic = 'Basic ' + Buffer.from(`admin:${portal.password}`).toString('base64')
  const tokRes = await fetch(`${base}/api/v1/tokens`, { method: 'POST', headers: { Authorization: basic, 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'e2e-dashboard' }) })
  assert.equal(tokRes.status, 201, await tokRes.clone().text())
  const token = (await tokRes.json()).token
  const api = async (method, path, body) => {
    const res = await fetch(base + path, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) })
    const text = await res.text()
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`)
    return text ? JSON.parse(text) : null
  }

  const goodEP = await api('POST', '/api/v1/endpoints', { url: good.url, description: 'receiver that answers 200' })
  const badEP = await api('POST', '/api/v1/endpoints', { url: bad.url, description: 'receiver that answers 500' })

  // Uploads through tus (creation, then one PATCH), as any tus client.
  const sizes = [150_000, 80_000, 260_000, 40_000, 120_000]
  const uploads = []
  for (const [i, size] of sizes.entries()) {
    const name = `chart-${i}.bin`
    const create = await fetch(`${base}/files/`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0', 'Upload-Length': String(size), 'Upload-Metadata': `filename ${Buffer.from(name).toString('base64')}` },
    })
    assert.equal(create.status, 201)
    const patch = await fetch(new URL(create.headers.get('location'), base), {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: randomBytes(size),
    })
    assert.equal(patch.status, 204, `PATCH ${name}`)
    uploads.push(name)
  }

  // What happened, as the API tells it, once every delivery is final.
  const files = (await api('GET', '/api/v1/files?limit=50')).items
  assert.equal(files.length, uploads.length)
  const events = (await api('GET', '/api/v1/events?limit=100')).items
  assert.equal(events.length, uploads.length)
  let details = []
  const deadline = Date.now() + 60_000
  for (;;) {
    details = await Promise.all(events.map((e) => api('GET', `/api/v1/events/${e.id}`)))
    const open = details.flatMap((e) => e.deliveries).filter((d) => !['succeeded', 'failed'].includes(d.status))
    if (open.length === 0) break
    assert.ok(Date.now() < deadline, `deliveries still open after 60 s: ${open.map((d) => d.status)}`)
    await new Promise((r) => setTimeout(r, 300))
  }
  const attempts = details.flatMap((e) => e.deliveries.flatMap((d) => d.attempts.map((a) => ({ ...a, endpoint: d.endpoint_id }))))
  const ok = (a) => a.status_code >= 200 && a.status_code <= 299
  assert.ok(attempts.some(ok) && attempts.some((a) => !ok(a)), 'attempts of both outcomes')
  const uploadsPerHour = countBy(files, (f) => hourOf(f.stored_at))
  const bytesPerHour = countBy(files, (f) => hourOf(f.stored_at), (f) => f.size_bytes)
  const successPerHour = countBy(attempts.filter(ok), (a) => hourOf(a.attempted_at))
  const failedPerHour = countBy(attempts.filter((a) => !ok(a)), (a) => hourOf(a.attempted_at))
  const badNow = await api('GET', `/api/v1/endpoints/${badEP.id}`)
  assert.ok(badNow.failing_since, 'the broken receiver\'s endpoint is failing')

  await page.goto(base + '/login')
  await page.getByLabel('Username').fill('admin')
  await page.getByLabel('Password').fill(portal.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(/\/ui\/dashboard$/)

  // checkCharts compares the period's charts with the API's figures.
  const checkCharts = async (hours) => {
    const chart = (id) => page.locator(`svg#${id}`)
    for (const id of ['chart-uploads', 'chart-bytes', 'chart-deliveries']) {
      assert.equal(await chart(id).getAttribute('data-hours'), String(hours), `${id}: hours`)
      assert.equal(await chart(id).locator('g.hour').count(), hours, `${id}: a bar slot per hour`)
      assert.match(await chart(id).locator('title').first().textContent(), /\(UTC\)$/)
      assert.match(await chart(id).locator('desc').textContent(), /UTC/)
    }
    const perHour = async (id, attr) => {
      const m = new Map()
      for (const g of await chart(id).locator('g.hour').all()) {
        const v = Number(await g.getAttribute(`data-${attr}`))
        if (v) m.set(await g.getAttribute('data-hour'), v)
      }
      return m
    }
    assert.deepEqual(await perHour('chart-uploads', 'uploads'), uploadsPerHour, 'uploads per hour')
    assert.deepEqual(await perHour('chart-bytes', 'bytes'), bytesPerHour, 'bytes per hour')
    assert.deepEqual(await perHour('chart-deliveries', 'success'), successPerHour, 'successful attempts per hour')
    assert.deepEqual(await perHour('chart-deliveries', 'http_error'), failedPerHour, 'failed attempts per hour')
    // The labelled maximum is the busiest hour: every upload, unless the
    // run straddled an hour.
    const maxUploads = Math.max(...uploadsPerHour.values())
    assert.equal((await chart('chart-uploads').locator('text.ylabel.max').textContent()).trim(), String(maxUploads))
    if (uploadsPerHour.size === 1) assert.equal(maxUploads, uploads.length)
    assert.equal(await chart('chart-bytes').locator('text.ylabel.max').getAttribute('data-value'), String(Math.max(...bytesPerHour.values())))
    assert.equal(await chart('chart-uploads').locator('rect.bar').count(), uploadsPerHour.size, 'a bar per hour with uploads')
    assert.equal(await chart('chart-deliveries').locator('rect.bar.s-http_error').count(), failedPerHour.size)
    // Each endpoint: its rate, p95 and sparkline; the failing one's moment.
    const row = (ep) => page.locator(`table.health tr[data-endpoint="${ep.id}"]`)
    assert.match(await row(goodEP).locator('.rate-day').innerText(), /^100%/)
    assert.match(await row(goodEP).locator('.p95-day').innerText(), /\d+(\.\d)? (ms|s)$/)
    assert.match(await row(badEP).locator('.rate-week').innerText(), /^0%/)
    assert.equal(await row(badEP).locator('.p95-week').innerText(), '—')
    const since = row(badEP).locator('time.failing-since')
    assert.equal(Date.parse(await since.getAttribute('datetime')), Math.floor(Date.parse(badNow.failing_since) / 1000) * 1000)
    assert.match(await since.innerText(), / UTC$/)
    assert.equal(await row(goodEP).locator('time.failing-since').count(), 0)
    for (const ep of [goodEP, badEP]) {
      const spark = row(ep).locator('svg.spark')
      assert.equal(await spark.getAttribute('data-hours'), String(hours))
      for (const line of await spark.locator('polyline').all()) {
        assert.equal((await line.getAttribute('points')).split(' ').length, hours, 'a point per hour')
      }
    }
    assert.equal(await row(badEP).locator('svg.spark .mark').count(), 1, 'the failing moment is marked')
    // ... inside the drawing, within the span of its hour (the period's
    // hours share the width, less a unit each side).
    const spark = row(badEP).locator('svg.spark')
    const width = Number((await spark.getAttribute('viewBox')).split(' ')[2])
    const mx = Number(await spark.locator('.mark line').getAttribute('x1'))
    const first = Date.parse(await chart('chart-uploads').locator('g.hour').first().getAttribute('data-hour'))
    const i = Math.floor((Date.parse(badNow.failing_since) - first) / hourMS)
    const slot = (width - 2) / hours
    assert.ok(i >= 0 && i < hours && mx >= 1 + i * slot - 0.01 && mx <= 1 + (i + 1) * slot + 0.01,
      `failing-since mark at x=${mx}, want within hour ${i} of ${hours} (width ${width})`)
  }

  await t.test('the last 24 hours', async () => {
    await page.goto(base + '/ui/dashboard')
    assert.equal(await page.locator('nav.period a[aria-current="page"]').innerText(), 'Last 24 hours')
    await checkCharts(24)
    await page.locator('details.numbers summary').click()
    const total = page.locator('table.hours tfoot')
    assert.match(await total.innerText(), new RegExp(`Total\\s+${uploads.length}\\s`))
    await shot(page, '24h')
    await shot.element(page.locator('section.history'), 'history-24h')
  })

  await t.test('the last 7 days', async () => {
    await page.getByRole('link', { name: 'Last 7 days' }).click()
    await page.waitForURL(/period=7d$/)
    await checkCharts(168)
    await shot(page, '7d')
    await shot.element(page.locator('section.history'), 'history-7d')
  })

  await t.test('a bad period is a 400 page', async () => {
    const res = await page.goto(base + '/ui/dashboard?period=1y')
    assert.equal(res.status(), 400)
    assert.match(await page.locator('main').innerText(), /The period must be 24h or 7d/)
    await shot(page, 'bad-period')
    // Chromium logs the 400 it was sent to; that one error is expected.
    const expected = consoleErrors.findIndex((e) => e.includes('period=1y') && e.includes('status of 400'))
    assert.ok(expected >= 0, 'Chromium saw the 400')
    consoleErrors.splice(expected, 1)
  })

  await t.test('a file\'s timeline of events and deliveries', async () => {
    const file = files[0]
    const ev = details.find((e) => e.file_id === file.id)
    await page.goto(`${base}/ui/files/${file.id}`)
    const tl = page.locator('svg.timeline')
    assert.equal(await tl.locator('.tl-event').count(), 1, 'its one event')
    assert.equal(await tl.locator('.tl-stored').count(), 1)
    const its = ev.deliveries.flatMap((d) => d.attempts)
    assert.equal(await tl.locator('.tl-ok').count(), its.filter(ok).length, 'a green mark per successful attempt')
    assert.equal(await tl.locator('.tl-fail').count(), its.filter((a) => !ok(a)).length, 'a red mark per failed attempt')
    assert.equal(await tl.getAttribute('data-lanes'), String(1 + ev.deliveries.length), 'a lane for the file and per delivery')
    assert.match(await tl.locator('title').first().textContent(), /UTC/)
    assert.match(await tl.locator('desc').textContent(), /2 deliveries with \d+ attempts/)
    await page.locator('details.numbers summary').click()
    assert.equal(await page.locator('table.timeline-table tbody tr').count(), 1 + 1 + 1 + its.length,
      'stored, the event, the expiry and every attempt')
    await shot(page, 'file-timeline')
    await shot.element(page.locator('.timeline-box'), 'timeline')
  })

  await t.test('no console errors', () => {
    assert.deepEqual(consoleErrors, [])
    console.log(`screenshots: ${shot.list.length} in ${shot.dir}`)
  })
})
