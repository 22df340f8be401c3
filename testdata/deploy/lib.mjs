// Helpers shared by the deployment tests (docker.mjs, nginx.mjs,
// quickstart.mjs): processes, HTTP(S) requests with a private CA, webhook
// receivers, certificates made with openssl, tus uploads with
// tus-js-client. Everything listens on 127.0.0.1.

import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Webhook } from 'standardwebhooks'
import * as tus from 'tus-js-client'

/** sha256 is the lower-case hex SHA-256 of buf. */
export const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

const cleanups = []
/** atExit runs fn when the test process ends (in reverse order). */
export function atExit (fn) { cleanups.push(fn) }
let cleaned = false
function cleanUp () {
  if (cleaned) return
  cleaned = true
  for (const fn of cleanups.reverse()) {
    try { fn() } catch (err) { console.error('cleanup:', err.message) }
  }
}
process.on('exit', cleanUp)
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { cleanUp(); process.exit(130) })

/** workDir makes a temporary directory removed at exit. */
export function workDir (prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  atExit(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** sh runs a command and returns {code, stdout, stderr}; it never throws. */
export function sh (cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts })
  if (r.error) return { code: -1, stdout: '', stderr: r.error.message }
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** must runs a command and returns its trimmed stdout, or throws with its output. */
export function must (cmd, args, opts = {}) {
  const r = sh(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`)
  return r.stdout.trim()
}

/**
 * start spawns a long-running process, killed at exit with opts.stopSignal
 * (default SIGKILL; a process with children of its own, like nginx, needs
 * a signal it can pass on); its output is kept in .log.
 */
export function start (cmd, args, { stopSignal = 'SIGKILL', ...opts } = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  child.log = ''
  const keep = (c) => { child.log += c }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  atExit(() => child.kill(stopSignal))
  return child
}

/** freePort returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort () {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** waitUntil polls fn (async, truthy when done) every 100 ms for ms. */
export async function waitUntil (fn, ms, what) {
  const deadline = Date.now() + ms
  let last
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    await sleep(100)
  }
  throw new Error(`timed out after ${ms} ms: ${what}${last ? ` (last: ${last.message})` : ''}`)
}

/**
 * request makes an HTTP(S) request and resolves with {status, headers,
 * body (Buffer), text, json}. opts: method, headers, body, ca (PEM to trust).
 */
export function request (url, opts = {}) {
  const u = new URL(url)
  const mod = u.protocol === 'https:' ? https : http
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method: opts.method || 'GET', headers: opts.headers || {}, ca: opts.ca, timeout: 15_000 }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks)
        const text = body.toString('utf8')
        let json
        if ((res.headers['content-type'] || '').includes('json') && text) json = JSON.parse(text)
        resolve({ status: res.statusCode, headers: res.headers, body, text, json })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${opts.method || 'GET'} ${url}: timeout`)))
    req.on('error', reject)
    req.end(opts.body)
  })
}

/**
 * Portal talks to a portal's API at base (its public URL, perhaps through
 * a proxy whose certificate ca signs).
 */
export class Portal {
  constructor (base, { ca } = {}) {
    this.base = base
    this.ca = ca
    this.token = ''
  }

  async login (password) {
    const r = await this.call('/api/v1/tokens', {
      method: 'POST',
      headers: { Authorization: 'Basic ' + Buffer.from(`admin:${password}`).toString('base64'), 'Content-Type': 'application/json' },
      body: '{"name":"deploy-test"}',
    })
    if (r.status !== 201) throw new Error(`POST /api/v1/tokens: ${r.status} ${r.text}`)
    this.token = r.json.token
  }

  call (path, opts = {}) {
    const headers = { ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}), ...(opts.headers || {}) }
    return request(new URL(path, this.base).href, { ...opts, headers, ca: this.ca })
  }

  /** api GETs or POSTs JSON and fails unless the status is want. */
  async api (path, { method = 'GET', body, want = method === 'POST' ? [200, 201, 202] : [200] } = {}) {
    const r = await this.call(path, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    if (!want.includes(r.status)) throw new Error(`${method} ${path}: ${r.status} ${r.text}`)
    return r.json
  }

  /** all follows next_cursor through a list endpoint. */
  async all (path) {
    const items = []
    let cursor = ''
    for (let i = 0; i < 100; i++) {
      const sep = path.includes('?') ? '&' : '?'
      const page = await this.api(`${path}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      items.push(...page.items)
      if (!page.next_cursor) return items
      cursor = page.next_cursor
    }
    throw new Error(`${path}: too many pages`)
  }

  /** upload sends data with tus-js-client and resolves with the upload URL and the Location headers seen. */
  upload (data, { filename = 'file.bin', uploadUrl, chunkSize } = {}) {
    const locations = []
    return new Promise((resolve, reject) => {
      const up = new tus.Upload(data, {
        endpoint: new URL('/files/', this.base).href,
        ...(uploadUrl ? { uploadUrl } : {}),
        ...(chunkSize ? { chunkSize } : {}), // undefined would replace tus-js-client's default
        headers: this.token ? { Authorization: `Bearer ${this.token}` } : {},
        metadata: { filename, filetype: 'application/octet-stream' },
        retryDelays: null,
        httpStack: new tus.DefaultHttpStack(this.ca ? { ca: this.ca } : {}),
        onAfterResponse: (_req, res) => {
          const loc = res.getHeader('Location')
          if (loc) locations.push(loc)
        },
        onSuccess: () => resolve({ url: up.url, locations }),
        onError: reject,
      })
      up.start()
    })
  }

  /** fileOf returns the stored file of a tus upload URL (or undefined). */
  async fileOf (uploadUrl) {
    const id = new URL(uploadUrl).pathname.split('/').filter(Boolean).pop()
    return (await this.all('/api/v1/files')).find((f) => f.upload_id === id && f.status === 'stored')
  }
}

/**
 * receiver starts a webhook receiver on 127.0.0.1 (https with tls =
 * {key, cert}); .hooks collects {headers, body, event}; .url is its URL.
 */
export async function receiver (tls) {
  const rx = { hooks: [] }
  const handle = (req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      let event
      try { event = JSON.parse(body) } catch {}
      rx.hooks.push({ headers: req.headers, body, event })
      res.writeHead(204).end()
    })
  }
  const server = tls ? https.createServer(tls, handle) : http.createServer(handle)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  server.unref() // a receiver never keeps the test process alive
  atExit(() => server.close())
  rx.url = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}/hook`
  /** find returns the first hook for which pred(event) holds, waiting up to ms. */
  rx.find = (pred, ms, what) => waitUntil(() => rx.hooks.find((h) => h.event && pred(h.event)), ms, what)
  return rx
}

/** verify checks a received hook's Standard Webhooks signature with secret. */
export function verify (secret, hook) {
  return new Webhook(secret).verify(hook.body, hook.headers)
}

/**
 * makeCertificates writes, with openssl, a private CA and a certificate
 * for names (DNS names and IP addresses) signed by it, into dir; it
 * returns the paths and the PEM texts.
 */
export function makeCertificates (dir, names = ['localhost', '127.0.0.1']) {
  const p = (f) => join(dir, f)
  const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',')
  must('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Portal Test CA',
    '-keyout', p('ca.key'), '-out', p('ca.pem'), '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  must('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${names[0]}`, '-keyout', p('server.key'),
    '-out', p('server.csr')])
  writeFileSync(p('server.ext'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`)
  must('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', p('server.ext'), '-out', p('server.pem')])
  return {
    caFile: p('ca.pem'), certFile: p('server.pem'), keyFile: p('server.key'),
    ca: readFileSync(p('ca.pem')), cert: readFileSync(p('server.pem')), key: readFileSync(p('server.key')),
  }
}
