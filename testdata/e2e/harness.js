// Harness of the browser end-to-end test: the real portal binary on a free
// loopback port with a fresh data dir, a webhook receiver on 127.0.0.1, and
// Debian's Chromium driven by playwright-core (no downloaded browser).
//
// PORTAL_BIN names the binary (make e2e builds it); E2E_OUT is where
// screenshots go (make e2e: build/e2e).

import { spawn } from 'node:child_process'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHTTPServer } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { chromium } from 'playwright-core'

const here = dirname(fileURLToPath(import.meta.url))
export const portalBin = process.env.PORTAL_BIN || resolve(here, '../../build/portal')
export const outDir = process.env.E2E_OUT || resolve(here, '../../build/e2e')
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium'

const cleanups = []
process.on('exit', () => {
  for (const fn of cleanups.reverse()) {
    try { fn() } catch {}
  }
})

export function sha256 (buf) {
  return createHash('sha256').update(buf).digest('hex')
}

export function tempDir (prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** tempFile writes n random bytes to a file named name and returns its path and SHA-256. */
export function tempFile (name, n) {
  const data = randomBytes(n)
  const path = join(tempDir('portal-e2e-file-'), name)
  writeFileSync(path, data)
  return { path, name, size: n, sha256: sha256(data) }
}

function freePort () {
  return new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolvePort(port))
    })
  })
}

/** startPortal starts the binary and waits for /readyz. */
export async function startPortal ({ args = [], env = {} } = {}) {
  const port = await freePort()
  const dataDir = tempDir('portal-e2e-data-')
  const password = 'e2e-' + randomBytes(9).toString('hex')
  const childEnv = { ...process.env, PORTAL_ADMIN_PASSWORD: password, ...env }
  for (const k of Object.keys(childEnv)) {
    if (k.startsWith('PORTAL_') && k !== 'PORTAL_ADMIN_PASSWORD' && !(k in env)) delete childEnv[k]
  }
  const child = spawn(portalBin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...args],
    { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  cleanups.push(() => child.kill('SIGKILL'))
  let log = ''
  child.stdout.on('data', (c) => { log += c })
  child.stderr.on('data', (c) => { log += c })
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 20000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`portal exited (${child.exitCode}):\n${log}`)
    try {
      const res = await fetch(base + '/readyz')
      if (res.ok) break
    } catch {}
    if (Date.now() > deadline) throw new Error(`portal not ready after 20 s:\n${log}`)
    await sleep(100)
  }
  return {
    base,
    password,
    log: () => log,
    async stop () {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
    },
  }
}

/**
 * startReceiver starts a webhook receiver on 127.0.0.1. It answers 200, or
 * 500 while broken; it keeps every request it got.
 */
export async function startReceiver () {
  const rx = { requests: [], broken: false, waiters: [] }
  const server = createHTTPServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const r = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'),
        answered: rx.broken ? 500 : 200 }
      rx.requests.push(r)
      if (rx.broken) {
        res.writeHead(500, { 'Content-Type': 'text/plain' })
        res.end('receiver is broken on purpose (e2e)')
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.end('{"ok":true}')
      }
      for (const w of rx.waiters.splice(0)) w()
    })
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  cleanups.push(() => server.close())
  rx.url = `http://127.0.0.1:${server.address().port}/hook`
  /** waitFor resolves with the first request matching pred. */
  rx.waitFor = async (pred, ms = 20000, what = 'a webhook request') => {
    const deadline = Date.now() + ms
    for (;;) {
      const hit = rx.requests.find(pred)
      if (hit) return hit
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${rx.requests.length} request(s)`)
      await Promise.race([new Promise((r) => rx.waiters.push(r)), sleep(250)])
    }
  }
  rx.close = () => new Promise((r) => server.close(r))
  return rx
}

/** verifySignature checks a Standard Webhooks signature with secret (whsec_…). */
export function verifySignature (req, secret) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64')
  const id = req.headers['webhook-id']
  const ts = req.headers['webhook-timestamp']
  const want = createHmac('sha256', key).update(`${id}.${ts}.${req.body}`).digest('base64')
  const got = String(req.headers['webhook-signature'] || '').split(' ').map((s) => s.replace(/^v1,/, ''))
  return got.includes(want)
}

/** launchBrowser starts headless Chromium with a fresh profile. */
export async function launchBrowser () {
  const profile = tempDir('portal-e2e-profile-')
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    viewport: { width: 1280, height: 900 },
  })
  cleanups.push(() => context.close().catch(() => {}))
  return context
}

/**
 * screenshotter saves numbered full-page screenshots under
 * outDir/screenshots, named prefix-NN-name.png (NN-name.png without a
 * prefix). It first removes the earlier run's screenshots of the same
 * prefix only, so test files that run one after the other keep theirs.
 */
export function screenshotter (prefix = '') {
  const dir = join(outDir, 'screenshots')
  mkdirSync(dir, { recursive: true })
  const mine = prefix ? new RegExp(`^${prefix}-\\d\\d-.*\\.png$`) : /^\d\d-.*\.png$/
  for (const f of readdirSync(dir)) {
    if (mine.test(f)) rmSync(join(dir, f), { force: true })
  }
  let n = 0
  const shots = []
  const shot = async (page, name) => {
    n++
    const path = join(dir, `${prefix ? prefix + '-' : ''}${String(n).padStart(2, '0')}-${name}.png`)
    await page.screenshot({ path, fullPage: true })
    shots.push(path)
    return path
  }
  /** shot.element saves a screenshot of one element (a locator). */
  shot.element = async (locator, name) => {
    n++
    const path = join(dir, `${prefix ? prefix + '-' : ''}${String(n).padStart(2, '0')}-${name}.png`)
    await locator.screenshot({ path })
    shots.push(path)
    return path
  }
  shot.list = shots
  shot.dir = dir
  return shot
}
