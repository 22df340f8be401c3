// A client generated from the portal's OpenAPI document, used against the
// real portal binary. `make openapi-client` generates gen/portal.d.ts from
// app/api/v1/openapi.json with openapi-typescript, compiles this file with
// tsc against it (so every call below is type-checked against the
// document), and runs it with PORTAL_BIN.

import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import createClient from 'openapi-fetch'
import type { paths, webhooks } from './gen/portal.js'

const here = resolve(import.meta.dirname, '..')
const docPath = resolve(here, '../../app/api/v1/openapi.json')
const portalBin = process.env.PORTAL_BIN ?? resolve(here, '../../build/portal')

/** The body of a file.uploaded delivery, as the document's webhooks type it. */
type FileUploaded = webhooks['file.uploaded']['post']['requestBody']['content']['application/json']

/** freePort returns a loopback port that was free a moment ago. */
async function freePort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolveListen) => srv.listen(0, '127.0.0.1', resolveListen))
  const { port } = srv.address() as AddressInfo
  await new Promise((resolveClose) => srv.close(resolveClose))
  return port
}

/** startPortal starts the binary on a fresh data dir and waits for /readyz. */
async function startPortal (password: string): Promise<{ base: string, stop: () => void }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'portal-openapi-'))
  const port = await freePort()
  const child: ChildProcess = spawn(portalBin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--allow-private-endpoints'], {
    env: { PATH: process.env.PATH, PORTAL_ADMIN_PASSWORD: password },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = '' // the portal's log, shown if it does not start
  child.stderr?.on('data', (b: Buffer) => { log = (log + b.toString()).slice(-20_000) })
  const stop = (): void => {
    child.kill('SIGKILL')
    rmSync(dataDir, { recursive: true, force: true })
  }
  process.on('exit', stop)
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`portal exited with ${child.exitCode}:\n${log}`)
    try {
      if ((await fetch(base + '/readyz')).ok) return { base, stop }
    } catch { /* not listening yet */ }
    await sleep(50)
  }
  stop()
  throw new Error(`portal not ready within 10 s:\n${log}`)
}

/** receiver is a webhook endpoint on 127.0.0.1 that keeps what it gets. */
async function startReceiver (): Promise<{ url: string, next: () => Promise<{ headers: IncomingHttpHeaders, body: string }>, close: () => void }> {
  const got: Array<{ headers: IncomingHttpHeaders, body: string }> = []
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolveListen) => srv.listen(0, '127.0.0.1', resolveListen))
  const { port } = srv.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hook`,
    next: async () => {
      for (let i = 0; i < 200; i++) {
        const d = got.shift()
        if (d) return d
        await sleep(50)
      }
      throw new Error('no delivery within 10 s')
    },
    close: () => srv.close(),
  }
}

/** tusUpload stores data as a file through the tus endpoint. */
async function tusUpload (base: string, token: string, name: string, data: Buffer): Promise<void> {
  const auth = { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0' }
  const created = await fetch(base + '/files/', {
    method: 'POST',
    headers: { ...auth, 'Upload-Length': String(data.length), 'Upload-Metadata': `filename ${Buffer.from(name).toString('base64')}` },
  })
  assert.equal(created.status, 201)
  const location = created.headers.get('Location')
  assert.ok(location)
  const patched = await fetch(new URL(location, base), {
    method: 'PATCH',
    headers: { ...auth, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
    body: new Uint8Array(data),
  })
  assert.equal(patched.status, 204)
}

test('a client generated from the OpenAPI document talks to a real portal', { timeout: 60_000 }, async (t) => {
  const password = 'openapi-' + randomBytes(9).toString('hex')
  const portal = await startPortal(password)
  t.after(portal.stop)
  const anonymous = createClient<paths>({ baseUrl: portal.base })

  await t.test('the portal serves the document the client was generated from', async () => {
    const { data, response } = await anonymous.GET('/api/v1/openapi.json', { parseAs: 'text' })
    assert.equal(response.status, 200)
    assert.equal(data, readFileSync(docPath, 'utf8'))
    // Generated again from the served URL: its references to the event
    // schemas (../../schemas/…) resolve against the portal's /schemas/.
    const fromURL = spawnSync(resolve(here, 'node_modules/.bin/openapi-typescript'), [portal.base + '/api/v1/openapi.json'],
      { encoding: 'utf8' })
    assert.equal(fromURL.status, 0, fromURL.stderr)
    assert.equal(fromURL.stdout, readFileSync(resolve(here, 'gen/portal.d.ts'), 'utf8'))
  })

  const basic = 'Basic ' + Buffer.from(`admin:${password}`).toString('base64')
  const { data: created, response: tokenResp } = await anonymous.POST('/api/v1/tokens', {
    headers: { Authorization: basic },
    body: { name: 'openapi-client', expires_in: '1h' },
  })
  assert.equal(tokenResp.status, 201)
  assert.ok(created)
  assert.match(created.token, /^dpt_/)
  assert.equal(created.name, 'openapi-client')
  const client = createClient<paths>({ baseUrl: portal.base, headers: { Authorization: `Bearer ${created.token}` } })

  await t.test('who am I', async () => {
    const { data, error } = await client.GET('/api/v1/me')
    assert.equal(error, undefined)
    assert.ok(data)
    assert.equal(data.user.username, 'admin')
    assert.equal(data.user.role, 'admin')
    assert.equal(data.auth, 'token')
  })

  await t.test('an endpoint, an upload, its file, its bytes and its webhook', async () => {
    const receiver = await startReceiver()
    t.after(receiver.close)
    const { data: endpoint, response } = await client.POST('/api/v1/endpoints', {
      body: { url: receiver.url, event_types: ['file.uploaded'], description: 'openapi client test' },
    })
    assert.equal(response.status, 201)
    assert.ok(endpoint)
    assert.match(endpoint.secret, /^whsec_/)
    assert.deepEqual(endpoint.event_types, ['file.uploaded'])

    const bytes = randomBytes(4096)
    await tusUpload(portal.base, created.token, 'report.bin', bytes)
    const { data: page } = await client.GET('/api/v1/files', { params: { query: { status: 'stored', limit: 10 } } })
    assert.ok(page)
    const file = page.items[0]
    assert.ok(file)
    assert.equal(file.filename, 'report.bin')
    assert.equal(file.size_bytes, bytes.length)
    assert.equal(file.sha256, createHash('sha256').update(bytes).digest('hex'))

    const { data: content, response: contentResp } = await client.GET('/api/v1/files/{id}/content', {
      params: { path: { id: file.id } },
      parseAs: 'arrayBuffer',
    })
    assert.equal(contentResp.status, 200)
    assert.ok(content)
    assert.ok(Buffer.from(content).equals(bytes))

    const delivery = await receiver.next()
    const event = JSON.parse(delivery.body) as FileUploaded
    assert.equal(event.event_type, 'file.uploaded')
    assert.equal(event.file.id, file.id)
    assert.equal(event.file.sha256, file.sha256)
    // download_url and source are required by the schema: typed string.
    const downloadURL: string = event.file.download_url
    assert.equal(downloadURL, `${portal.base}/api/v1/files/${file.id}/content`)
    assert.equal(event.source, portal.base)
    assert.equal(delivery.headers['webhook-id'], event.event_id)
    assert.match(String(delivery.headers['webhook-signature']), /^v1,/)
  })

  await t.test('errors have the documented shape', async () => {
    const { data, error, response } = await client.GET('/api/v1/files/{id}', { params: { path: { id: 'not-a-uuid' } } })
    assert.equal(data, undefined)
    assert.equal(response.status, 400)
    assert.ok(error)
    assert.equal(error.error.code, 'bad_request')
    const denied = await anonymous.GET('/api/v1/files')
    assert.equal(denied.response.status, 401)
    assert.equal(denied.error?.error.code, 'unauthorized')
  })
})
