// make nginx-test: the portal behind Debian's nginx with TLS, configured
// with the server block of docs/operations.md (only its address, port and
// certificate paths replaced), a certificate of a private CA made here.
// tus-js-client uploads through the proxy; the upload URLs must be the
// proxy's, and so must the events' source and file.download_url once
// --public-url is set. With --trust-proxy alone the portal warns that
// event links will be internal, and they are.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Portal, freePort, makeCertificates, must, sha256, start, waitUntil, workDir } from './lib.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const portalBin = process.env.PORTAL_BIN || join(root, 'build/portal')
const nginxBin = process.env.NGINX || 'nginx'
const say = (...a) => console.log('nginx-test:', ...a)

/** serverBlock is the ```nginx block of docs/operations.md with its address, port and certificate replaced. */
function serverBlock (listen, upstream, certs) {
  const doc = readFileSync(join(root, 'docs/operations.md'), 'utf8')
  const m = doc.match(/```nginx\n([\s\S]*?)```/)
  assert.ok(m, 'docs/operations.md has an nginx block')
  let conf = m[1]
  for (const [from, to] of [
    ['listen 443 ssl;', `listen ${listen} ssl;`],
    ['server_name uploads.example.org;', 'server_name localhost;'],
    ['/etc/ssl/uploads.example.org.pem', certs.certFile],
    ['/etc/ssl/uploads.example.org.key', certs.keyFile],
    ['proxy_pass http://127.0.0.1:8080;', `proxy_pass http://${upstream};`],
  ]) {
    assert.ok(conf.includes(from), `the nginx block of docs/operations.md has ${from}`)
    conf = conf.replace(from, to)
  }
  return conf
}

async function startNginx (work, listen, upstream, certs) {
  mkdirSync(join(work, 'nginx'))
  const conf = join(work, 'nginx/nginx.conf')
  writeFileSync(conf, `daemon off;
worker_processes 1;
pid ${work}/nginx/nginx.pid;
error_log ${work}/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log ${work}/nginx/access.log;
    client_body_temp_path ${work}/nginx/body;
    proxy_temp_path ${work}/nginx/proxy;
    fastcgi_temp_path ${work}/nginx/fastcgi;
    uwsgi_temp_path ${work}/nginx/uwsgi;
    scgi_temp_path ${work}/nginx/scgi;
${serverBlock(listen, upstream, certs)}
}
`)
  must(nginxBin, ['-t', '-q', '-e', `${work}/nginx/error.log`, '-c', conf])
  // SIGTERM: the master stops its workers (SIGKILL would orphan them).
  return start(nginxBin, ['-e', `${work}/nginx/error.log`, '-c', conf], { stopSignal: 'SIGTERM' })
}

/** startPortal runs the binary on port with extra flags, until the test ends. */
async function startPortal (work, name, port, password, flags) {
  const child = start(portalBin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', join(work, name), '--trust-proxy', ...flags],
    { env: { PATH: process.env.PATH, PORTAL_ADMIN_PASSWORD: password } })
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 20_000, 'portal ready')
    .catch((err) => { throw new Error(`${err.message}\n${child.log}`) })
  return child
}

test('the portal behind nginx with TLS', { timeout: 120_000 }, async (t) => {
  const work = workDir('portal-nginx-test-')
  chmodSync(work, 0o755) // nginx's workers run as nobody
  const certs = makeCertificates(work, ['localhost', '127.0.0.1'])
  const nport = await freePort()
  const pport = await freePort()
  const proxied = `https://localhost:${nport}`
  const nginx = await startNginx(work, `127.0.0.1:${nport}`, `127.0.0.1:${pport}`, certs)
  t.after(async () => {
    nginx.kill('SIGTERM')
    await nginx.exited
  })
  const password = `nginx-test-${randomBytes(6).toString('hex')}`

  /** uploadThrough uploads data in chunks through nginx and returns the file, the Location headers and the event. */
  async function uploadThrough (portal) {
    await waitUntil(async () => (await portal.call('/readyz')).status === 200, 10_000, 'nginx reaches the portal')
    await portal.login(password)
    const data = randomBytes(5 << 20)
    const { url, locations } = await portal.upload(data, { filename: 'proxied.bin', chunkSize: 2 << 20 })
    const file = await portal.fileOf(url)
    assert.equal(file.sha256, sha256(data), 'the bytes arrived whole through nginx')
    const events = await portal.all(`/api/v1/events?file_id=${file.id}`)
    const ev = events.find((e) => e.type === 'file.uploaded')
    return { data, url, locations, file, event: ev.payload }
  }

  await t.test('--trust-proxy and --public-url: upload URLs and event links are the public ones', async () => {
    const portal = new Portal(proxied, { ca: certs.ca })
    const child = await startPortal(work, 'both', pport, password, ['--public-url', proxied])
    const { data, url, locations, file, event } = await uploadThrough(portal)
    say(`with --public-url ${proxied}: Location ${locations[0]}; event source ${event.source}, download_url ${event.file.download_url}`)
    assert.ok(url.startsWith(`${proxied}/files/`), url)
    for (const loc of locations) assert.ok(loc.startsWith(`${proxied}/files/`), `Location ${loc}`)
    assert.equal(event.source, proxied)
    assert.equal(event.file.download_url, `${proxied}/api/v1/files/${file.id}/content`)
    const content = await portal.call(new URL(event.file.download_url).pathname)
    assert.equal(content.status, 200)
    assert.equal(sha256(content.body), sha256(data), 'download_url through nginx serves the bytes')
    assert.doesNotMatch(child.log, /--trust-proxy without --public-url/)
    child.kill('SIGTERM')
    await child.exited
  })

  await t.test('--trust-proxy alone: upload URLs follow the proxy, event links are internal, and the portal warns', async () => {
    const portal = new Portal(proxied, { ca: certs.ca })
    const child = await startPortal(work, 'proxy-only', pport, password, [])
    const { locations, event } = await uploadThrough(portal)
    say(`with --trust-proxy alone: Location ${locations[0]}; event source ${event.source}`)
    for (const loc of locations) assert.ok(loc.startsWith(`${proxied}/files/`), `Location ${loc}`)
    assert.equal(event.source, `http://127.0.0.1:${pport}`)
    assert.match(child.log, /level=WARN msg="--trust-proxy without --public-url/)
    child.kill('SIGTERM')
    await child.exited
  })
})
