// Helpers for the end-to-end tests: start the real portal binary on a free
// loopback port, talk to its API, and upload with tus-js-client.
//
// The binary comes from PORTAL_BIN (make test-node sets it); nothing is
// built here. Every child process is killed when the test process ends,
// whatever happened.

import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import * as tus from 'tus-js-client'

const here = dirname(fileURLToPath(import.meta.url))

/** PORTAL_BIN, or the binary `make build` writes. */
export const portalBin = process.env.PORTAL_BIN || resolve(here, '../../build/portal')

/**
 * storage is where the portals of this run keep uploads: local (the data
 * directory) or s3 (PORTAL_STORAGE=s3: a real S3 server, versitygw from
 * PORTAL_VERSITYGW, started here on a free loopback port).
 */
export const storage = process.env.PORTAL_STORAGE || 'local'

const s3Keys = { access: 'portal-node-access', secret: 'portal-node-secret-key' }
let s3Server = null

/** startS3 starts the run's S3 server once, with one bucket. */
async function startS3() {
  if (s3Server) return s3Server
  const dir = await mkdtemp(join(tmpdir(), 'portal-node-s3-'))
  dataDirs.add(dir)
  await mkdir(join(dir, 'bucket'))
  const port = await freePort()
  const bin = process.env.PORTAL_VERSITYGW || join(process.env.HOME, '.cache/doorito/bin/versitygw')
  const child = spawn(bin, ['--quiet', '--port', `127.0.0.1:${port}`, 'posix', dir], {
    env: { ...process.env, ROOT_ACCESS_KEY: s3Keys.access, ROOT_SECRET_KEY: s3Keys.secret, VGW_REGION: 'us-east-1' },
    stdio: 'ignore',
  })
  children.add(child)
  child.unref() // the run ends when its tests do; cleanUp kills the server
  const deadline = Date.now() + 15_000
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) })
      break
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`versitygw (${bin}) does not answer: ${err.message}`)
      await sleep(100)
    }
  }
  s3Server = { url: `http://127.0.0.1:${port}`, bucket: 'bucket' }
  return s3Server
}

const children = new Set()
const dataDirs = new Set()
function cleanUp() {
  for (const child of children) child.kill('SIGKILL')
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
}
process.on('exit', cleanUp)
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    cleanUp()
    process.exit(130)
  })
}

/** sha256 returns the lower-case hex SHA-256 of buf. */
export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex')
}

/** randomData returns n random bytes. */
export function randomData(n) {
  return randomBytes(n)
}

/** withTimeout rejects when p has not settled within ms. */
export function withTimeout(p, ms, what) {
  let timer
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

/** freePort returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolvePort(port))
    })
  })
}

/** uploadIdOf returns the upload id, the last path segment of a tus upload URL. */
export function uploadIdOf(url) {
  return new URL(url).pathname.split('/').filter(Boolean).pop()
}

/**
 * innerPid is the host PID of the process a wrapper (unshare --fork) started:
 * the wrapper's only child.
 */
export async function innerPid(wrapperPid) {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const tasks = await readdir(`/proc/${wrapperPid}/task`).catch(() => [])
    for (const t of tasks) {
      const kids = (await readFile(`/proc/${wrapperPid}/task/${t}/children`, 'utf8').catch(() => '')).trim()
      if (kids) return Number(kids.split(/\s+/)[0])
    }
    await sleep(20)
  }
  throw new Error(`no child of process ${wrapperPid}`)
}

/**
 * Portal is one portal process on a fixed data dir and port; it can be
 * stopped and started again on both.
 */
export class Portal {
  /**
   * @param {object} opts
   * @param {string[]} [opts.args] extra `serve` flags
   * @param {string[]} [opts.wrap] a command the portal runs under (e.g. unshare)
   */
  constructor(opts = {}) {
    this.args = opts.args || []
    this.wrap = opts.wrap || []
    this.password = `pw-${randomBytes(12).toString('hex')}`
    this.token = null
    this.child = null
    this.log = ''
    this.starts = 0
  }

  get base() {
    return `http://127.0.0.1:${this.port}`
  }

  /** endpoint is the tus creation URL. */
  get endpoint() {
    return `${this.base}/files/`
  }

  /** headers are what every request needs to be authenticated. */
  get headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {}
  }

  /** start starts the portal (first time: on a new data dir and port) and waits until it is ready. */
  async start() {
    if (this.child) throw new Error('portal already running')
    if (!this.dataDir) {
      this.dataDir = await mkdtemp(join(tmpdir(), 'portal-node-'))
      dataDirs.add(this.dataDir)
    }
    if (!this.port) this.port = await freePort()
    this.starts++
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir,
      '--log-level', 'warn', ...this.args]
    const env = { ...process.env, PORTAL_ADMIN_PASSWORD: this.password }
    for (const k of Object.keys(env)) {
      if (k.startsWith('PORTAL_') && k !== 'PORTAL_ADMIN_PASSWORD') delete env[k]
    }
    if (storage === 's3') {
      // One prefix per portal (one portal per prefix), named after its data dir.
      const s3 = await startS3()
      args.push('--storage', 's3', '--s3-bucket', s3.bucket, '--s3-endpoint', s3.url, '--s3-path-style',
        '--s3-prefix', `${basename(this.dataDir)}/`)
      Object.assign(env, { AWS_ACCESS_KEY_ID: s3Keys.access, AWS_SECRET_ACCESS_KEY: s3Keys.secret, AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true' })
    }
    const [cmd, ...cmdArgs] = [...this.wrap, portalBin, ...args]
    const child = spawn(cmd, cmdArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    children.add(child)
    const append = (chunk) => {
      this.log += chunk.toString()
      if (this.log.length > 200_000) this.log = this.log.slice(-100_000)
    }
    child.stdout.on('data', append)
    child.stderr.on('data', append)
    child.exited = new Promise((resolveExit) => {
      child.on('exit', (code, signal) => {
        children.delete(child)
        resolveExit({ code, signal })
      })
      child.on('error', (err) => {
        children.delete(child)
        append(`spawn ${portalBin}: ${err.message}\n`)
        resolveExit({ code: null, signal: null, error: err })
      })
    })
    await this.waitReady(child)
    if (this.token === null) await this.login()
  }

  async waitReady(child, ms = 20_000) {
    const deadline = Date.now() + ms
    let last = 'no answer'
    let exited = null
    child.exited.then((e) => { exited = e })
    while (Date.now() < deadline) {
      if (exited) {
        throw new Error(`portal exited before it was ready (${JSON.stringify(exited)}); log:\n${this.log}`)
      }
      try {
        const res = await fetch(`${this.base}/readyz`, { signal: AbortSignal.timeout(2000) })
        await res.arrayBuffer()
        if (res.status === 200) return
        last = `status ${res.status}`
      } catch (err) {
        last = err.cause?.code || err.message
      }
      await sleep(50)
    }
    throw new Error(`portal not ready within ${ms} ms (last: ${last}); log:\n${this.log}`)
  }

  /** login gets an API token for the admin (when the portal has users at all). */
  async login() {
    const basic = Buffer.from(`admin:${this.password}`).toString('base64')
    const res = await fetch(`${this.base}/api/v1/tokens`, {
      method: 'POST',
      headers: { Authorization: `Basic ${basic}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'node-tests' }),
      signal: AbortSignal.timeout(10_000),
    })
    const text = await res.text()
    if (res.status === 404 || res.status === 405) {
      this.token = '' // a portal without users: the API is open
      return
    }
    if (res.status !== 201) throw new Error(`POST /api/v1/tokens: ${res.status} ${text}`)
    this.token = JSON.parse(text).token
  }

  /** stop sends SIGTERM and waits for the process to exit. */
  async stop(ms = 15_000) {
    const child = this.child
    if (!child) return null
    this.child = null
    if (child.exitCode === null && child.signalCode === null) {
      // A wrapper such as unshare does not pass SIGTERM on: signal the portal.
      if (this.wrap.length) process.kill(await innerPid(child.pid), 'SIGTERM')
      else child.kill('SIGTERM')
    }
    try {
      return await withTimeout(child.exited, ms, 'portal exit after SIGTERM')
    } catch (err) {
      child.kill('SIGKILL')
      await withTimeout(child.exited, 5000, 'portal exit after SIGKILL').catch(() => {})
      throw new Error(`${err.message}; log:\n${this.log}`)
    }
  }

  /** kill kills the portal with SIGKILL (no clean shutdown) and waits for it to end. */
  async kill() {
    const child = this.child
    if (!child) return null
    this.child = null
    child.kill('SIGKILL')
    return withTimeout(child.exited, 10_000, 'portal exit after SIGKILL')
  }

  /** restart stops the portal and starts it again on the same data dir and port. */
  async restart() {
    const exit = await this.stop()
    await this.start()
    return exit
  }

  /** close stops the portal (SIGKILL if need be) and removes its data dir. */
  async close() {
    try {
      await this.stop()
    } finally {
      if (this.child) this.child.kill('SIGKILL')
      if (this.dataDir) {
        await rm(this.dataDir, { recursive: true, force: true })
        dataDirs.delete(this.dataDir)
      }
    }
  }

  /** request makes an authenticated request and returns {status, headers, text, json}. */
  async request(path, init = {}) {
    const res = await fetch(new URL(path, this.base), {
      ...init,
      headers: { ...this.headers, ...(init.headers || {}) },
      signal: AbortSignal.timeout(10_000),
    })
    const buf = Buffer.from(await res.arrayBuffer())
    const text = buf.toString('utf8')
    let json
    if ((res.headers.get('content-type') || '').includes('json')) json = JSON.parse(text)
    return { status: res.status, headers: res.headers, buf, text, json }
  }

  /**
   * waitReceived waits until the portal holds at least n bytes of the
   * upload at url (of a PATCH still open). On local storage that is its
   * data file; on S3 the bytes are in parts in transit, so it waits a
   * moment instead.
   */
  async waitReceived(url, n, ms = 10_000) {
    if (storage === 's3') {
      await sleep(1500)
      return
    }
    const bytesFile = join(this.dataDir, 'uploads', uploadIdOf(url))
    const deadline = Date.now() + ms
    while ((await stat(bytesFile).then((s) => s.size, () => 0)) < n) {
      if (Date.now() > deadline) throw new Error(`${bytesFile} did not reach ${n} bytes`)
      await sleep(20)
    }
  }

  /** create creates an upload of length bytes with tus metadata meta and returns its URL. */
  async create(length, meta = {}) {
    const metadata = Object.entries(meta).map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`).join(',')
    const created = await this.request('/files/', {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(length), 'Upload-Metadata': metadata },
    })
    if (created.status !== 201) throw new Error(`create upload: ${created.status} ${created.text}`)
    return new URL(created.headers.get('location'), this.endpoint).href
  }

  /**
   * openPatch starts one PATCH from offset 0 that announces length bytes;
   * the caller writes the body (req.write) and ends or abandons it.
   */
  openPatch(url, length) {
    return httpRequest(url, {
      method: 'PATCH',
      headers: {
        ...this.headers,
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(length),
      },
    })
  }

  /** api GETs a JSON API path and fails unless the answer is 200. */
  async api(path) {
    const r = await this.request(path)
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`)
    return r.json
  }

  /** listAll follows next_cursor through a list endpoint and returns every item. */
  async listAll(path) {
    const items = []
    let cursor = ''
    for (let page = 0; page < 1000; page++) {
      const sep = path.includes('?') ? '&' : '?'
      const body = await this.api(`${path}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      if (!Array.isArray(body.items)) throw new Error(`GET ${path}: no items array: ${JSON.stringify(body)}`)
      items.push(...body.items)
      if (!body.next_cursor) return items
      cursor = body.next_cursor
    }
    throw new Error(`GET ${path}: more than 1000 pages`)
  }

  /** files returns every file the API lists. */
  files() {
    return this.listAll('/api/v1/files')
  }

  /** fileOfUpload returns the file recorded for a tus upload URL, or undefined. */
  async fileOfUpload(url) {
    const id = uploadIdOf(url)
    return (await this.files()).find((f) => f.upload_id === id)
  }

  /** head sends a tus HEAD for an upload URL. */
  async head(url) {
    const r = await this.request(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
    return {
      status: r.status,
      offset: Number(r.headers.get('upload-offset')),
      length: r.headers.get('upload-length') === null ? null : Number(r.headers.get('upload-length')),
    }
  }
}

/**
 * upload runs one tus-js-client upload of source to portal and resolves
 * when it succeeds, with the upload URL, the requests the client made
 * ({method, url, status, reqHeaders (the Upload-* headers sent), offset
 * and location (from the response)}) and how many chunks were accepted.
 * options go to tus.Upload, except beforeStart(upload), an async hook run
 * before start() (e.g. to resume a previous upload).
 */
export function upload(portal, source, options = {}, ms = 20_000) {
  const requests = []
  let chunks = 0
  let up
  const p = new Promise((resolveUpload, reject) => {
    up = new tus.Upload(source, {
      endpoint: portal.endpoint,
      retryDelays: null, // surface every failure; the resume tests resume by hand
      ...options,
      headers: { ...portal.headers, ...(options.headers || {}) },
      onAfterResponse: (req, res) => {
        requests.push({
          method: req.getMethod(),
          url: req.getURL(),
          status: res.getStatus(),
          reqHeaders: Object.fromEntries(['Upload-Length', 'Upload-Defer-Length', 'Upload-Offset', 'Upload-Concat']
            .map((h) => [h, req.getHeader(h)]).filter(([, v]) => v !== undefined)),
          offset: res.getHeader('Upload-Offset'),
          location: res.getHeader('Location'),
        })
      },
      onChunkComplete: () => {
        chunks++
      },
      onSuccess: () => resolveUpload(),
      onError: (err) => reject(err),
    })
    if (options.beforeStart) {
      options.beforeStart(up).then(() => up.start(), reject)
    } else {
      up.start()
    }
  })
  return withTimeout(p, ms, 'tus upload').then(
    () => ({ url: up.url, upload: up, requests, chunks }),
    (err) => {
      up.abort() // stop a timed-out upload from running on in the background
      throw err
    })
}

/**
 * uploadUntilAborted starts an upload and aborts it from onChunkComplete
 * once at least abortAfter bytes were accepted; it resolves with the
 * upload URL and the accepted offset.
 */
export function uploadUntilAborted(portal, source, options, abortAfter, ms = 20_000) {
  const requests = []
  let up
  return withTimeout(new Promise((resolveAbort, reject) => {
    up = new tus.Upload(source, {
      endpoint: portal.endpoint,
      retryDelays: null,
      ...options,
      headers: { ...portal.headers, ...(options.headers || {}) },
      onAfterResponse: (req, res) => {
        requests.push({ method: req.getMethod(), status: res.getStatus(), offset: res.getHeader('Upload-Offset') })
      },
      onChunkComplete: (_size, accepted) => {
        if (accepted >= abortAfter) {
          up.abort().then(() => resolveAbort({ url: up.url, offset: accepted, requests }), reject)
        }
      },
      onSuccess: () => reject(new Error('upload finished before it was aborted')),
      onError: reject,
    })
    up.start()
  }), ms, 'upload until abort').catch((err) => {
    up.abort()
    throw err
  })
}

/**
 * assertStored checks that the portal recorded url's upload as a stored
 * file with data's size and SHA-256, the given name and type, exactly one
 * file.uploaded event whose payload agrees, and that the bytes served
 * back are data. It returns the file.
 */
export async function assertStored(assert, portal, url, data, { filename, contentType }) {
  const uploadId = uploadIdOf(url)
  const all = await portal.files()
  const mine = all.filter((f) => f.upload_id === uploadId)
  assert.equal(mine.length, 1, `one file row for upload ${uploadId}; files: ${JSON.stringify(all)}`)
  const f = mine[0]
  const want = sha256(data)
  for (const k of ['id', 'upload_id', 'filename', 'content_type', 'size_bytes', 'sha256', 'storage',
    'metadata', 'status', 'stored_at', 'expires_at']) {
    assert.ok(k in f, `file has ${k}: ${JSON.stringify(f)}`)
  }
  assert.equal(f.sha256, want, 'stored sha256 is the hash of the bytes sent')
  assert.equal(f.size_bytes, data.length)
  assert.equal(f.filename, filename)
  assert.equal(f.content_type, contentType)
  assert.equal(f.status, 'stored')
  assert.equal(f.storage.backend, storage)
  assert.equal(typeof f.storage.bucket, 'string')
  assert.ok(f.storage.bucket.length > 0, 'storage bucket is named')
  const baseId = uploadId.split('+')[0] // on S3 the upload id adds the multipart upload's
  assert.ok(f.storage.key.includes(baseId), `storage key ${f.storage.key} names upload ${baseId}`)
  assert.ok(Date.parse(f.expires_at) > Date.parse(f.stored_at), 'expires after it was stored')

  // The single-file endpoint agrees with the list.
  const one = await portal.api(`/api/v1/files/${f.id}`)
  assert.deepEqual(one, f)

  const events = await portal.listAll(`/api/v1/events?file_id=${f.id}`)
  const uploaded = events.filter((e) => e.type === 'file.uploaded')
  assert.equal(uploaded.length, 1, `exactly one file.uploaded event for file ${f.id}: ${JSON.stringify(events)}`)
  const ev = uploaded[0]
  assert.equal(ev.file_id, f.id)
  assert.ok(ev.id && ev.created_at, 'event has id and created_at')
  const pf = ev.payload.file
  assert.equal(ev.payload.event_type, 'file.uploaded')
  assert.equal(pf.sha256, want, 'event payload sha256 is the hash of the bytes sent')
  assert.equal(pf.id, f.id)
  assert.equal(pf.size_bytes, data.length)
  assert.equal(pf.filename, filename)
  assert.equal(pf.content_type, contentType)
  assert.deepEqual(pf.storage, f.storage)
  // The actor is whoever created the upload: the admin whose token the
  // tests use, or nobody on a portal without users.
  assert.deepEqual(Object.keys(ev.payload.actor).sort(), ['user_id', 'username'])
  assert.equal(ev.payload.actor.username, portal.token ? 'admin' : null)

  // The bytes on disk are the bytes sent.
  const content = await portal.request(`/api/v1/files/${f.id}/content`)
  assert.equal(content.status, 200, `GET content: ${content.status} ${content.text.slice(0, 200)}`)
  assert.equal(content.buf.length, data.length)
  assert.equal(sha256(content.buf), want, 'downloaded bytes hash to the bytes sent')
  return f
}
