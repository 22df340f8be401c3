// Lints a Dockerfile with dockerfile-utils and checks the portal's own
// requirements of its image: multi-stage, static CGO-free build, one
// runtime stage (FROM scratch, non-root, a /data volume, port 8080, a
// HEALTHCHECK via `portal healthcheck`, listening on 0.0.0.0:8080) that both
// the default target and the prebuilt target build on, the prebuilt target
// before any stage that pulls an image, and no `# syntax=` line.
import { readFileSync } from 'node:fs';
import { validate } from 'dockerfile-utils';

const path = process.argv[2] ?? 'Dockerfile';
const text = readFileSync(path, 'utf8');
const problems = validate(text).map(d => `${path}:${d.range.start.line + 1}: ${d.message}`);

const need = [
  [/^FROM\s+\S+\s+AS\s+\w+/im, 'a named build stage (multi-stage build)'],
  [/CGO_ENABLED=0|make build/, 'a CGO_ENABLED=0 build (make build sets it)'],
  [/^FROM\s+(scratch|gcr\.io\/distroless\/static\S*)\s+AS\s+runtime\s*$/im, 'a runtime stage FROM scratch or distroless/static'],
  [/^USER\s+(?!root|0\b)\S+/im, 'a non-root USER'],
  [/^VOLUME\s+\/data\b/im, 'VOLUME /data'],
  [/^EXPOSE\s+8080\b/im, 'EXPOSE 8080'],
  [/^HEALTHCHECK\s.*portal"?,?\s*"?healthcheck/im, 'HEALTHCHECK running `portal healthcheck`'],
  [/PORTAL_LISTEN=0\.0\.0\.0:8080/, 'PORTAL_LISTEN=0.0.0.0:8080'],
];
for (const [re, what] of need) {
  if (!re.test(text)) problems.push(`${path}: missing ${what}`);
}
// The image users build and the one CI tests are the runtime stage plus a
// binary: the last stage (the default target) and the prebuilt target.
const froms = [...text.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({ base: m[1], name: m[2] }))
const last = froms[froms.length - 1]
if (!last || last.base !== 'runtime' || last.name) problems.push(`${path}: the last stage must be FROM runtime (the default target)`)
if (!froms.some((f) => f.base === 'runtime' && f.name === 'prebuilt')) problems.push(`${path}: missing a prebuilt stage FROM runtime`)
const firstPull = froms.findIndex((f) => f.base.includes(':'))
const prebuilt = froms.findIndex((f) => f.name === 'prebuilt')
if (firstPull !== -1 && prebuilt > firstPull) problems.push(`${path}: the prebuilt stage must come before any stage that pulls an image (the classic builder builds every stage up to --target)`)
if (/^#\s*syntax\s*=/im.test(text)) problems.push(`${path}: a # syntax= line pulls the Dockerfile frontend from a registry`)
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`${path}: dockerfile-utils found no problems; image requirements met`);
