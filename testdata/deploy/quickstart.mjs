// make quickstart-test: the README's quick start, run as written. The
// blocks after <!-- quickstart: server --> and <!-- quickstart: client -->
// run verbatim in bash from the repository's root: the server block (make
// run) in the background with PORTAL_DATA_DIR pointing at a fresh
// directory (so a checkout's ./data is left alone), then the client block,
// with a webhook receiver on 127.0.0.1:9000 where the README registers one.
// The upload must be stored, its file.uploaded event listed, and delivered
// to the receiver with a valid signature.

import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import http from 'node:http'
import { join, resolve, dirname } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { atExit, sh, start, verify, waitUntil, workDir } from './lib.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const say = (...a) => console.log('quickstart-test:', ...a)

/** block returns the fenced sh block after the marker in the README. */
function block (readme, marker) {
  const m = readme.match(new RegExp(`<!-- quickstart: ${marker} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\``))
  assert.ok(m, `README.md has a sh block after <!-- quickstart: ${marker} -->`)
  return m[1]
}

/** listen binds 127.0.0.1:port for a receiver, or says what holds it. */
function receiverOn (port) {
  const rx = { hooks: [] }
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      rx.hooks.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
      res.writeHead(204).end()
    })
  })
  return new Promise((resolveListen, reject) => {
    server.on('error', (err) => reject(new Error(`127.0.0.1:${port} (the README's webhook receiver): ${err.message}`)))
    server.listen(port, '127.0.0.1', () => {
      server.unref()
      atExit(() => server.close())
      resolveListen(rx)
    })
  })
}

test("the README's quick start, as written", { timeout: 900_000 }, async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const server = block(readme, 'server')
  const client = block(readme, 'client')
  const busy = await fetch('http://127.0.0.1:8080/healthz').then(() => true, () => false)
  assert.ok(!busy, 'something already answers on 127.0.0.1:8080, the address the quick start uses; stop it first')
  const rx = await receiverOn(9000)
  const data = join(workDir('portal-quickstart-'), 'data')

  const env = { ...process.env, PORTAL_DATA_DIR: data }
  for (const k of Object.keys(env)) if (k.startsWith('PORTAL_') && k !== 'PORTAL_DATA_DIR') delete env[k]
  // Its own process group, so that make and the portal it starts stop together.
  const srv = start('bash', ['-euo', 'pipefail', '-c', server], { cwd: root, env, detached: true, stopSignal: 'SIGTERM' })
  atExit(() => { try { process.kill(-srv.pid, 'SIGTERM') } catch {} })
  let exited = null
  srv.exited.then((e) => { exited = e })
  const t0 = Date.now()
  await waitUntil(async () => {
    if (exited) throw new Error(`the server block exited (${JSON.stringify(exited)}):\n${srv.log}`)
    return (await fetch('http://127.0.0.1:8080/readyz')).status === 200
  }, 840_000, 'the portal of the server block ready on 127.0.0.1:8080').catch((err) => {
    throw new Error(`${err.message}\n${srv.log}`)
  })
  say(`server block: ready on 127.0.0.1:8080 after ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  const r = sh('bash', ['-euo', 'pipefail', '-c', client], { cwd: root, env })
  say(`client block: exit ${r.code}\n${r.stdout}${r.stderr}`)
  assert.equal(r.code, 0)
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'))
  const endpoint = JSON.parse(lines.find((l) => l.includes('"secret"')))
  const files = JSON.parse(lines.find((l) => l.includes('"filename"') && !l.includes('"event_type"')))
  const events = JSON.parse(lines.find((l) => l.includes('"event_type"')))
  const file = files.items.find((f) => f.filename === 'hello.txt')
  assert.ok(file, `hello.txt is listed: ${JSON.stringify(files)}`)
  assert.equal(file.status, 'stored')
  assert.equal(file.size_bytes, 11)
  assert.equal(file.sha256, 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9')
  assert.ok(events.items.some((e) => e.type === 'file.uploaded' && e.file_id === file.id), 'its file.uploaded event is listed')

  const hook = await waitUntil(() => rx.hooks.find((h) => h.body.includes(file.id)), 15_000, 'the delivery to 127.0.0.1:9000')
  const payload = verify(endpoint.secret, hook)
  assert.equal(hook.url, '/hooks')
  assert.equal(payload.event_type, 'file.uploaded')
  say(`hello.txt stored (sha256 ${file.sha256.slice(0, 12)}…), file.uploaded listed and delivered to the receiver, signature verified`)

  process.kill(-srv.pid, 'SIGTERM')
  const exit = await srv.exited
  say(`server block stopped: ${JSON.stringify(exit)}`)
  assert.ok(existsSync(join(data, 'portal.db')), 'the portal kept its data in PORTAL_DATA_DIR')
})
