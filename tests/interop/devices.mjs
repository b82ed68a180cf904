// Signed device readings (docs/FORMAT.md section 10), checked independently: written
// from FORMAT.md sections 1.1, 6 and 10 alone, reusing verify.mjs's strict canonical
// msgpack decoder and encoder. Node.js 20, built-in modules only.
//
//   node tests/interop/verify.mjs devices tests/vectors/anchorgate/device_signatures.json
//   node tests/interop/verify.mjs signed-reading <payload file> <topic> <device public key PEM>
//
// Verification runs the four steps of section 10 in order and names the first that
// fails: `decode` (1: not a canonical version-1 signed reading), `device-id` (2: the
// topic names another device than the reading), `key-id` (3: signed by a key that is
// not the trusted device key), `signature` (4: Ed25519 does not verify). Section 10
// names no failure identifiers; the vector file uses two, `format` for step 1 and
// `signature` for a reading that is well formed but not the device's (steps 2-4).

import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { decodeArray, encArray, loadPublicKey, parseJSON } from './verify.mjs';

const SIGNING_CONTEXT = 'anchorgate/device-reading/v1';
const MARKER = 0x95; // a msgpack fixarray of 5: the first byte of every signed reading
const MAX_READING = 262144;
const STEP_ERROR = { topic: 'format', decode: 'format', 'device-id': 'signature', 'key-id': 'signature', signature: 'signature' };

const sha256 = (b) => createHash('sha256').update(b).digest();
const byteLen = (min, max) => (v) => (v.length >= min && v.length <= max ? null : `${v.length} bytes, must be ${min === max ? min : `${min}..${max}`}`);

const SIGNED_READING = [
  ['version', 'uint'],
  ['device_id', 'str'],
  ['key_id', 'bin', byteLen(32, 32)],
  ['reading', 'bin', byteLen(1, MAX_READING)],
  ['signature', 'bin', byteLen(64, 64)],
];
const SIGNING_INPUT = [['context', 'str'], ['topic', 'str'], ['device_id', 'str'], ['key_id', 'bin'], ['reading', 'bin']];

class StepFail extends Error {
  constructor(step, message) { super(message); this.step = step; this.error = STEP_ERROR[step]; }
}

// Step 1. decodeArray enforces the canonical encoding, the element count (checked
// before any field is read), the version, UTF-8 and that no byte follows the array.
function decodeSignedReading(payload) {
  if (payload.length === 0 || payload[0] !== MARKER) throw new StepFail('decode', 'signed reading: does not start with 0x95 (a fixarray of 5)');
  let d;
  try { d = decodeArray(payload, 'signed reading', SIGNED_READING); } catch (e) { throw new StepFail('decode', e.message); }
  if (d.device_id_len < 1 || d.device_id_len > 128) throw new StepFail('decode', `signed reading: device_id is ${d.device_id_len} bytes, must be 1..128`);
  if (d.reading[0] === MARKER) throw new StepFail('decode', 'signed reading: reading starts with 0x95 (a signed reading inside a signed reading)');
  return d;
}

function checkTopic(topic) {
  if (typeof topic !== 'string' || !topic.isWellFormed()) throw new StepFail('topic', 'topic is not valid UTF-8 text');
  const n = Buffer.byteLength(topic, 'utf8');
  if (n < 1 || n > 65535) throw new StepFail('topic', `topic is ${n} bytes, must be 1..65535`);
}

function signingInput(topic, deviceId, keyId, reading) {
  checkTopic(topic);
  return encArray(SIGNING_INPUT, { context: SIGNING_CONTEXT, topic, device_id: deviceId, key_id: keyId, reading });
}

// Step 2 for the default topic template `sensors/{device_id}/{kind}`: the device the
// topic names, or null for a topic the template does not match.
function topicDevice(topic) {
  const levels = topic.split('/');
  return levels.length === 3 && levels[0] === 'sensors' && levels[1] !== '' && levels[2] !== '' ? levels[1] : null;
}

// Returns the decoded signed reading; throws StepFail naming the first failed step.
// trustedKey: a loadPublicKey() result (the device key the verifier trusts).
function verifySignedReading(topic, payload, trustedKey) {
  checkTopic(topic);
  const d = decodeSignedReading(payload);
  const named = topicDevice(topic); // null: the template does not match, step 2 has nothing to check
  if (named !== null && named !== d.device_id) throw new StepFail('device-id', `device_id ${JSON.stringify(d.device_id)} is not the device of topic ${JSON.stringify(topic)}`);
  if (!d.key_id.equals(trustedKey.keyId)) throw new StepFail('key-id', `key_id ${d.key_id.toString('hex')} is not the trusted device key's ${trustedKey.keyId.toString('hex')}`);
  let ok = false;
  try { ok = edVerify(null, signingInput(topic, d.device_id, d.key_id, d.reading), trustedKey.key, d.signature); } catch { ok = false; }
  if (!ok) throw new StepFail('signature', 'the Ed25519 signature does not verify over the signing input');
  return d;
}

// { valid, step, error, message } for the CLI and scripted tests.
function signedReadingVerdict(topic, payload, trustedKey) {
  try {
    verifySignedReading(topic, payload, trustedKey);
    return { valid: true, step: null, error: null, message: null };
  } catch (e) {
    if (!(e instanceof StepFail)) throw e;
    return { valid: false, step: e.step, error: e.error, message: e.message };
  }
}

// ---------------------------------------------------------------- vector file

// A member the vector file must have: a string, or (list = true) a list.
function need(o, name, where, list = false) {
  const v = o !== null && typeof o === 'object' && !Array.isArray(o) ? o[name] : undefined;
  if (list ? !Array.isArray(v) : typeof v !== 'string') throw new Error(`${where}: member "${name}" is missing or not a ${list ? 'list' : 'string'}`);
  return v;
}
function hexOf(o, name, where) {
  const s = need(o, name, where);
  if (!/^(?:[0-9a-f]{2})*$/.test(s)) throw new Error(`${where}: ${name} is not lowercase hex`);
  return Buffer.from(s, 'hex');
}
const seedKey = (seed) => createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });

// Bytes the decoder must refuse, built from a valid wire encoding (one per rule of step 1).
function strictnessProbes(wire) {
  const idEnd = 2 + 1 + (wire[2] - 0xa0); // fixarray, version, fixstr device_id
  const probes = {
    'array16 for 5': Buffer.concat([Buffer.from([0xdc, 0x00, 0x05]), wire.subarray(1)]),
    '6 elements': Buffer.concat([Buffer.from([0x96]), wire.subarray(1), Buffer.from([0x00])]),
    '4 elements': Buffer.concat([Buffer.from([0x94]), wire.subarray(1, wire.length - 66)]),
    'empty device_id': Buffer.concat([wire.subarray(0, 2), Buffer.from([0xa0]), wire.subarray(idEnd)]),
    'device_id of 129 bytes': Buffer.concat([wire.subarray(0, 2), Buffer.from([0xd9, 129]), Buffer.alloc(129, 0x61), wire.subarray(idEnd)]),
    'device_id as bin': Buffer.concat([wire.subarray(0, 2), Buffer.from([0xc4, wire[2] - 0xa0]), wire.subarray(3)]),
    'invalid UTF-8 device_id': Buffer.concat([wire.subarray(0, 3), Buffer.from([0xff]), wire.subarray(4)]),
    'key_id as str': Buffer.concat([wire.subarray(0, idEnd), Buffer.from([0xd9]), wire.subarray(idEnd + 1)]),
  };
  const d = decodeArray(wire, 'signed reading', SIGNED_READING);
  const rebuilt = (change) => encArray(SIGNED_READING, { ...d, ...change });
  probes['key_id of 31 bytes'] = rebuilt({ key_id: d.key_id.subarray(1) });
  probes['empty reading'] = rebuilt({ reading: Buffer.alloc(0) });
  probes['reading starting with 0x95'] = rebuilt({ reading: Buffer.concat([Buffer.from([MARKER]), d.reading]) });
  probes['reading of 262145 bytes'] = rebuilt({ reading: Buffer.alloc(MAX_READING + 1, 0x7b) });
  probes['signature of 63 bytes'] = rebuilt({ signature: d.signature.subarray(1) });
  probes['signature as str'] = Buffer.concat([wire.subarray(0, wire.length - 66), Buffer.from([0xd9, 64]), d.signature]);
  probes['bin16 for key_id'] = Buffer.concat([wire.subarray(0, idEnd), Buffer.from([0xc5, 0x00, 0x20]), wire.subarray(idEnd + 2)]);
  return probes;
}

// Checks device_signatures.json; returns { cases, probes, problems }. Throws on a file
// that does not have the members this reader needs.
function checkDeviceVectors(v) {
  const problems = [];
  if (need(v, 'signing_context', 'file') !== SIGNING_CONTEXT) problems.push(`signing_context ${JSON.stringify(v.signing_context)} != ${JSON.stringify(SIGNING_CONTEXT)}`);
  const key = loadPublicKey(need(v.key, 'public_key_pem', 'key'));
  const priv = seedKey(hexOf(v.key, 'seed', 'key'));
  if (!createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12).equals(key.raw)) problems.push('key: the seed does not give public_key_pem');
  if (!hexOf(v.key, 'public_key', 'key').equals(key.raw)) problems.push('key: public_key differs from public_key_pem');
  if (!hexOf(v.key, 'key_id', 'key').equals(key.keyId)) problems.push('key: key_id != SHA-256(raw public key)');
  let cases = 0; let probes = 0;
  for (const [i, c] of need(v, 'valid', 'file', true).entries()) {
    cases++;
    const at = `valid[${i}]`;
    const reading = hexOf(c, 'reading', at); const wire = hexOf(c, 'signed_reading', at); const signature = hexOf(c, 'signature', at);
    const topic = need(c, 'topic', at); const deviceId = need(c, 'device_id', at);
    const input = signingInput(topic, deviceId, key.keyId, reading);
    if (!input.equals(hexOf(c, 'signing_input', at))) problems.push(`${at}: rebuilt signing input ${input.toString('hex')} != the file's`);
    if (!edVerify(null, input, key.key, signature)) problems.push(`${at}: signature does not verify over the rebuilt signing input`);
    if (!edSign(null, input, priv).equals(signature)) problems.push(`${at}: signing with the seed gives another signature (Ed25519 is deterministic)`);
    const rebuilt = encArray(SIGNED_READING, { version: 1n, device_id: deviceId, key_id: key.keyId, reading, signature });
    if (!rebuilt.equals(wire)) problems.push(`${at}: rebuilt wire bytes ${rebuilt.toString('hex')} != signed_reading`);
    const r = signedReadingVerdict(topic, wire, key);
    if (!r.valid) problems.push(`${at}: refused at step ${r.step}: ${r.message}`);
    for (const [name, bad] of Object.entries(strictnessProbes(wire))) {
      probes++;
      const p = signedReadingVerdict(topic, bad, key);
      if (p.step !== 'decode') problems.push(`${at}: probe "${name}" gave ${p.valid ? 'valid' : p.step}, expected decode`);
    }
  }
  for (const [i, c] of need(v, 'invalid', 'file', true).entries()) {
    cases++;
    const at = `invalid[${i}]`;
    const expected = need(c, 'error', at);
    if (!Object.values(STEP_ERROR).includes(expected)) throw new Error(`${at}: unknown error name ${JSON.stringify(expected)}`);
    const r = signedReadingVerdict(need(c, 'topic', at), hexOf(c, 'signed_reading', at), key);
    if (r.error !== expected) problems.push(`${at} "${c.name}": ${r.valid ? 'valid' : `${r.error} (step ${r.step}: ${r.message})`}, expected ${expected}`);
  }
  return { cases, probes, problems };
}

// ---------------------------------------------------------------- CLI (called by verify.mjs)

function fail(m) { console.error(m); process.exit(2); }
function readFile(p) { try { return readFileSync(p); } catch (e) { return fail(`cannot read ${p}: ${e.message}`); } }

function cmdDevices(args) {
  if (args.length !== 1) fail('usage: verify.mjs devices <device_signatures.json>');
  let result;
  try { result = checkDeviceVectors(parseJSON(readFile(args[0]).toString('utf8'))); } catch (e) { fail(`unreadable vector file ${args[0]}: ${e.message}`); }
  const valid = result.problems.length === 0;
  console.log(JSON.stringify({ valid, cases: result.cases, strictness_probes_rejected: result.probes, problems: result.problems }));
  process.exit(valid ? 0 : 1);
}

function cmdSignedReading(args) {
  if (args.length !== 3) fail('usage: verify.mjs signed-reading <payload file> <topic> <device public key PEM>');
  const payload = readFile(args[0]);
  let key;
  try { key = loadPublicKey(readFile(args[2]).toString('utf8')); } catch (e) { fail(`cannot load public key: ${e.message}`); }
  const r = signedReadingVerdict(args[1], payload, key);
  console.log(JSON.stringify({ valid: r.valid, step: r.step, error: r.error }));
  if (!r.valid) console.error(`${r.step}: ${r.message}`);
  process.exit(r.valid ? 0 : 1);
}

export { SIGNING_CONTEXT, SIGNED_READING, STEP_ERROR, StepFail, decodeSignedReading, signingInput, topicDevice,
  verifySignedReading, signedReadingVerdict, checkDeviceVectors, cmdDevices, cmdSignedReading };
