// Verifies webhook deliveries recorded by the Go tests with the npm
// standardwebhooks library (a verifier nobody on this project wrote).
//
// Usage: node verify.mjs deliveries.json
//
// The file holds a JSON array of deliveries as the receiver got them:
//   {"headers": {...}, "body_base64": "...", "received_at_ms": 0,
//    "secrets": ["whsec_..."],        // each must verify the delivery
//    "wrong_secrets": ["whsec_..."]}  // each must be rejected
// Every delivery is also checked to be rejected once its body is altered.
// The library checks the timestamp against the clock; it is checked at the
// moment the receiver got the request. Prints a JSON summary; exits 1 on
// the first mismatch.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const file = process.argv[2];
if (!file) {
  console.error("usage: node verify.mjs deliveries.json");
  process.exit(2);
}
const deliveries = JSON.parse(readFileSync(file, "utf8"));
const realNow = Date.now;
let verified = 0;
let rejected = 0;

function fail(i, msg) {
  console.error(`delivery ${i}: ${msg}`);
  process.exit(1);
}

deliveries.forEach((d, i) => {
  const body = Buffer.from(d.body_base64, "base64").toString("utf8");
  Date.now = () => d.received_at_ms;
  try {
    for (const secret of d.secrets) {
      let parsed;
      try {
        parsed = new Webhook(secret).verify(body, d.headers);
      } catch (e) {
        fail(i, `does not verify with a secret that should sign it: ${e.message}`);
      }
      if (JSON.stringify(parsed) !== JSON.stringify(JSON.parse(body))) {
        fail(i, "verify returned a different payload");
      }
      verified++;
      const tampered = body.replace(/}\s*$/, ',"tampered":true}');
      try {
        new Webhook(secret).verify(tampered, d.headers);
        fail(i, "an altered body verifies");
      } catch (e) {
        if (e.name !== "WebhookVerificationError") throw e;
      }
    }
    for (const secret of d.wrong_secrets ?? []) {
      try {
        new Webhook(secret).verify(body, d.headers);
        fail(i, "verifies with a secret that must not sign it");
      } catch (e) {
        if (e.name !== "WebhookVerificationError") throw e;
        rejected++;
      }
    }
  } finally {
    Date.now = realNow;
  }
});
console.log(JSON.stringify({ deliveries: deliveries.length, verified, rejected }));
