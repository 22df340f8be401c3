// Lints a Dockerfile with dockerfile-utils and checks the portal's own
// requirements of its image: multi-stage, static CGO-free build, non-root
// final stage, a /data volume, port 8080, a HEALTHCHECK via `portal
// healthcheck`, and listening on 0.0.0.0:8080 inside the image.
import { readFileSync } from 'node:fs';
import { validate } from 'dockerfile-utils';

const path = process.argv[2] ?? 'Dockerfile';
const text = readFileSync(path, 'utf8');
const problems = validate(text).map(d => `${path}:${d.range.start.line + 1}: ${d.message}`);

const need = [
  [/^FROM\s+\S+\s+AS\s+\w+/im, 'a named build stage (multi-stage build)'],
  [/CGO_ENABLED=0|make build/, 'a CGO_ENABLED=0 build (make build sets it)'],
  [/^FROM\s+(scratch|gcr\.io\/distroless\/static\S*)\s*$/im, 'a final stage FROM scratch or distroless/static'],
  [/^USER\s+(?!root|0\b)\S+/im, 'a non-root USER'],
  [/^VOLUME\s+\/data\b/im, 'VOLUME /data'],
  [/^EXPOSE\s+8080\b/im, 'EXPOSE 8080'],
  [/^HEALTHCHECK\s.*portal"?,?\s*"?healthcheck/im, 'HEALTHCHECK running `portal healthcheck`'],
  [/PORTAL_LISTEN=0\.0\.0\.0:8080/, 'PORTAL_LISTEN=0.0.0.0:8080'],
];
for (const [re, what] of need) {
  if (!re.test(text)) problems.push(`${path}: missing ${what}`);
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`${path}: dockerfile-utils found no problems; image requirements met`);
