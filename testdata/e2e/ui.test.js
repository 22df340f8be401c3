// The web UI in a real browser: Debian's headless Chromium drives the real
// portal binary. Signs in, uploads multi-MB files through the Uppy
// Dashboard (pause/resume, resume after a reload), checks the sha256 the
// server computed, registers a webhook endpoint on a local receiver, sees
// a delivery succeed, breaks the receiver, sees the failure and replays it.
// Every page visited is screenshotted; any browser console error fails.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  launchBrowser, screenshotter, startPortal, startReceiver, tempFile, verifySignature,
} from './harness.js'

const MiB = 1024 * 1024

test('the web UI in headless Chromium', { timeout: 300_000 }, async (t) => {
  // Every test runs every time: a flag the binary lacks makes it refuse to
  // start, and the run fails. The receiver is on loopback; one quick
  // retry, then the delivery is failed (and waits for a replay).
  const args = ['--allow-private-endpoints', '--delivery-retry-schedule', '1s']
  const portal = await startPortal({ args })
  const receiver = await startReceiver()
  const context = await launchBrowser()
  const shot = screenshotter()
  const consoleErrors = []
  const watch = (page) => {
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(`${page.url()}: ${msg.text()}`)
    })
    page.on('pageerror', (err) => consoleErrors.push(`${page.url()}: uncaught ${err.message}`))
  }
  context.on('page', watch)
  const page = context.pages()[0] || await context.newPage()
  watch(page)
  // The confirm() of destructive forms: accept.
  page.on('dialog', (d) => d.accept())
  const base = portal.base
  const go = async (path, name) => {
    const res = await page.goto(base + path)
    assert.ok(res.ok(), `GET ${path}: HTTP ${res.status()}`)
    await shot(page, name)
    return res
  }
  // reloadUntil reloads path until the text of selector matches re.
  const reloadUntil = async (path, re, what, { ms = 30_000, selector = 'main' } = {}) => {
    const deadline = Date.now() + ms
    for (;;) {
      await page.goto(base + path)
      const el = page.locator(selector)
      if (await el.count() && re.test(await el.first().innerText())) return
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} on ${path}`)
      await page.waitForTimeout(300)
    }
  }
  t.after(async () => {
    await context.close().catch(() => {})
    await portal.stop()
    await receiver.close()
  })

  await t.test('sign in', async () => {
    await page.goto(base + '/')
    assert.match(page.url(), /\/login$/, 'an anonymous visitor is sent to sign in')
    await shot(page, 'login')
    await page.getByLabel('Username').fill('admin')
    await page.getByLabel('Password').fill(portal.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL(/\/ui\/dashboard$/)
    await shot(page, 'dashboard-empty')
    assert.match(await page.locator('header').innerText(), /admin/)
  })

  const uploaded = []
  // upload adds a file to the Dashboard and starts the upload.
  const addAndStart = async (file) => {
    await page.locator('input.uppy-Dashboard-input:not([webkitdirectory])').setInputFiles(file.path)
    await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  }
  const resultRow = (file) => page.locator('#results tr[data-sha256]', { hasText: file.name })

  await t.test('upload a multi-MB file through the Uppy Dashboard', async () => {
    await go('/ui/upload', 'upload')
    const file = tempFile('e2e-first.bin', 6 * MiB + 12345)
    await page.selectOption('#ttl', { label: '1 day' })
    await addAndStart(file)
    const row = resultRow(file)
    await row.waitFor({ timeout: 60_000 })
    assert.equal(await row.getAttribute('data-sha256'), file.sha256, 'the server computed the same SHA-256')
    assert.match(await row.innerText(), new RegExp(file.sha256))
    file.id = await row.getAttribute('data-file-id')
    uploaded.push(file)
    await shot(page, 'upload-done')
  })

  await t.test('pause and resume an upload', async () => {
    await page.goto(base + '/ui/upload')
    const cdp = await context.newCDPSession(page)
    await cdp.send('Network.enable')
    // 2 MiB/s: the 10 MiB upload takes long enough to pause it.
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2 * MiB })
    const file = tempFile('e2e-paused.bin', 10 * MiB)
    await addAndStart(file)
    const toggle = page.locator('button[data-cy="togglePauseResume"]')
    await toggle.waitFor()
    await page.waitForTimeout(1200)
    await toggle.click()
    await page.locator('button[data-cy="togglePauseResume"][title="Resume"]').waitFor()
    await shot(page, 'upload-paused')
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 })
    await toggle.click()
    const row = resultRow(file)
    await row.waitFor({ timeout: 60_000 })
    assert.equal(await row.getAttribute('data-sha256'), file.sha256)
    file.id = await row.getAttribute('data-file-id')
    uploaded.push(file)
    await cdp.detach()
  })

  await t.test('resume an upload after a reload (tus fingerprint)', async () => {
    await page.goto(base + '/ui/upload')
    let cdp = await context.newCDPSession(page)
    await cdp.send('Network.enable')
    await cdp.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2 * MiB })
    const file = tempFile('e2e-reload.bin', 8 * MiB)
    const creates = []
    const onRequest = (req) => {
      if (req.method() === 'POST' && new URL(req.url()).pathname === '/files/') creates.push(req.url())
    }
    page.on('request', onRequest)
    await addAndStart(file)
    await page.waitForTimeout(1500)
    await cdp.detach()
    await page.reload()
    await shot(page, 'upload-reloaded')
    await addAndStart(file)
    const row = resultRow(file)
    await row.waitFor({ timeout: 60_000 })
    page.off('request', onRequest)
    assert.equal(await row.getAttribute('data-sha256'), file.sha256)
    assert.equal(creates.length, 1, 'the second attempt resumed the first upload instead of creating another')
    file.id = await row.getAttribute('data-file-id')
    uploaded.push(file)
  })

  await t.test('files are listed with the right sha256', async () => {
    await go('/ui/files', 'files')
    for (const f of uploaded) {
      const row = page.locator('table.list tbody tr', { hasText: f.name })
      assert.equal(await row.count(), 1, `${f.name} is listed once`)
      assert.match(await row.innerText(), new RegExp(f.sha256))
    }
    const first = uploaded[0]
    await page.getByRole('link', { name: first.name }).click()
    await page.waitForURL(new RegExp(`/ui/files/${first.id}$`))
    assert.equal((await page.locator('#sha256').innerText()).trim(), first.sha256)
    assert.match(await page.locator('main').innerText(), /file\.uploaded/)
    await shot(page, 'file-detail')
    const download = await page.request.get(`${base}/api/v1/files/${first.id}/content`)
    assert.equal(download.status(), 200)
    assert.equal((await download.body()).length, first.size)
    await go('/ui/files?status=stored&expiring=1', 'files-expiring')
    await page.setViewportSize({ width: 390, height: 844 })
    await go('/ui/files', 'files-phone')
    await go('/ui/upload', 'upload-phone')
    await page.setViewportSize({ width: 1280, height: 900 })
  })

  let endpointURL = ''
  let secret = ''
  await t.test('create a webhook endpoint; a test event is delivered', async () => {
    await go('/ui/endpoints', 'endpoints-empty')
    await page.getByLabel('URL').fill(receiver.url)
    await page.getByLabel('Description').fill('e2e receiver')
    await page.getByRole('button', { name: 'Add endpoint' }).click()
    await page.locator('#secret').waitFor()
    secret = await page.locator('#secret').inputValue()
    assert.match(secret, /^whsec_/)
    endpointURL = new URL(page.url()).pathname
    if (!/\/ui\/endpoints\/[0-9a-f-]+$/.test(endpointURL)) {
      endpointURL = await page.locator('form[action$="/test"]').getAttribute('action').then((a) => a.replace(/\/test$/, ''))
    }
    await shot(page, 'endpoint-created')
    await page.goto(base + endpointURL)
    assert.equal(await page.locator('#secret').count(), 0, 'the secret is shown only once')
    await page.getByRole('button', { name: 'Send a test event' }).click()
    const req = await receiver.waitFor((r) => r.answered === 200, 20_000, 'the test event')
    assert.ok(verifySignature(req, secret), 'the delivery is signed with the secret shown once')
    await reloadUntil(endpointURL, /succeeded/, 'a succeeded delivery')
    await shot(page, 'endpoint-delivered')
  })

  await t.test('rotate the secret; the test event is signed with the new one', async () => {
    await page.goto(base + endpointURL)
    await page.getByRole('button', { name: 'Rotate secret' }).click()
    await page.locator('#secret').waitFor()
    const rotated = await page.locator('#secret').inputValue()
    assert.match(rotated, /^whsec_/)
    assert.notEqual(rotated, secret)
    await shot(page, 'endpoint-rotated')
    const before = receiver.requests.length
    await page.goto(base + endpointURL)
    await page.getByRole('button', { name: 'Send a test event' }).click()
    const req = await receiver.waitFor((r, i) => receiver.requests.indexOf(r) >= before, 20_000, 'the second test event')
    assert.ok(verifySignature(req, rotated), 'signed with the new secret')
    assert.ok(verifySignature(req, secret), 'and, during the grace period, with the old one')
    secret = rotated
  })

  await t.test('a failing receiver: the failure is shown and replayed', async () => {
    receiver.broken = true
    const endpointID = endpointURL.split('/').pop()
    // A real event: another upload while the receiver answers 500.
    await page.goto(base + '/ui/upload')
    const file = tempFile('e2e-during-outage.bin', 2 * MiB)
    await addAndStart(file)
    await resultRow(file).waitFor({ timeout: 60_000 })
    file.id = await resultRow(file).getAttribute('data-file-id')
    const failed = await receiver.waitFor((r) => r.answered === 500 && r.body.includes(file.id), 20_000,
      'a delivery to the broken receiver')
    assert.ok(verifySignature(failed, secret))
    // With the one-retry schedule the delivery ends failed.
    const failedList = `/ui/events?endpoint=${endpointID}&status=failed`
    await reloadUntil(failedList, new RegExp(`file\\.uploaded[\\s\\S]*failed`), 'the delivery to be failed',
      { selector: 'table.deliveries tbody' })
    await shot(page, 'deliveries-failed')
    await go(endpointURL, 'endpoint-failing')
    assert.match(await page.locator('main').innerText(), /Last error\s+HTTP 500/)
    await go('/ui/dashboard', 'dashboard-failing')
    assert.match(await page.locator('main').innerText(), /1\s+failed deliveries/)
    // The event's page shows each attempt with its status and body.
    await page.goto(`${base}/ui/files/${file.id}`)
    await page.getByRole('link', { name: 'file.uploaded' }).click()
    await page.waitForURL(/\/ui\/events\//)
    const eventURL = new URL(page.url()).pathname
    const text = await page.locator('main').innerText()
    assert.match(text, /failed/)
    assert.match(text, /HTTP 500[\s\S]*receiver is broken on purpose/)
    await shot(page, 'event-failed-attempts')
    // Fix the receiver and replay the endpoint's failed deliveries.
    receiver.broken = false
    await page.goto(base + failedList)
    await page.getByRole('button', { name: 'Replay all failed deliveries of this endpoint' }).click()
    await page.waitForURL(/\/ui\/events\?endpoint=/)
    assert.match(await page.locator('.flash').innerText(), /1 delivery was queued again/)
    await shot(page, 'replay-queued')
    await receiver.waitFor((r) => r.answered === 200 && r.body.includes(file.id), 20_000, 'the replayed delivery')
    await reloadUntil(eventURL, /succeeded/, 'the replayed delivery to succeed')
    await shot(page, 'event-replayed')
    await go('/ui/events', 'events')
    await go(`/ui/events?endpoint=${endpointID}`, 'events-by-endpoint')
  })

  await t.test('admin pages: dashboard, users, tokens', async () => {
    await go('/ui/dashboard', 'dashboard')
    // The uploads above, and the one made while the receiver was broken.
    assert.match(await page.locator('main').innerText(), new RegExp(`${uploaded.length + 1}\\s+files stored`))
    await go('/ui/users', 'users')
    await page.getByLabel('Username').fill('uma')
    await page.locator('form[action="/ui/users"]').getByLabel('Password').fill('uploader-password-1')
    await page.getByRole('button', { name: 'Add user' }).click()
    await page.waitForURL(/\/ui\/users$/)
    assert.match(await page.locator('main').innerText(), /User uma was created/)
    await shot(page, 'users-created')
    await go('/ui/tokens', 'tokens')
    await page.getByLabel('Name').fill('e2e-token')
    await page.getByRole('button', { name: 'Create token' }).click()
    const token = await page.locator('#token-secret').inputValue()
    const me = await fetch(`${base}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } })
    assert.equal(me.status, 200, 'the token shown once works')
    await shot(page, 'token-created')
    await go('/ui/events', 'events-list')
  })

  await t.test('an uploader sees only the upload and their own files', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.waitForURL(/\/login$/)
    await page.getByLabel('Username').fill('uma')
    await page.getByLabel('Password').fill('uploader-password-1')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL(/\/ui\/upload$/)
    await shot(page, 'uploader-upload')
    const nav = await page.locator('header nav').innerText()
    assert.doesNotMatch(nav, /Endpoints|Users|Dashboard/)
    await go('/ui/files', 'uploader-files-empty')
    assert.match(await page.locator('main').innerText(), /No files yet/)
  })

  await t.test('no console errors', () => {
    assert.deepEqual(consoleErrors, [])
    console.log(`screenshots: ${shot.list.length} in ${shot.dir}`)
  })
})
