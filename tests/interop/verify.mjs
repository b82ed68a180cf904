// Independent anchorgate verifier, written from docs/FORMAT.md alone (no access to
// the Python sources). Node.js 20, built-in modules only.
//
//   node tests/interop/verify.mjs bundle <bundle file> <public key PEM file> [trusted head hex]
//   node tests/interop/verify.mjs chain <chain.json>
//   node tests/interop/verify.mjs envelopes <envelopes.json>
//   node tests/interop/verify.mjs rfc6962 <inclusion.json|consistency.json>  (extra: RFC 6962 cases)
//   node tests/interop/verify.mjs devices <device_signatures.json>             (section 10, devices.mjs)
//   node tests/interop/verify.mjs signed-reading <payload file> <topic> <device public key PEM>
//
// Exit status: 0 valid, 1 invalid, 2 usage / unreadable input file.

import { createHash, createPublicKey, verify as edVerify } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------- helpers

const sha256 = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const B0 = Buffer.from([0x00]);
const B1 = Buffer.from([0x01]);
const EMPTY_ROOT = sha256(Buffer.alloc(0));
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = (1n << 32n) - 1n;
const MAX_PROOF = 64; // FORMAT.md 8.1: at most 64 hashes per proof

class Fail extends Error {
  constructor(check, message, where = null) {
    super(message);
    this.check = check;
    this.where = where;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// RFC 4648 section 4, '=' padding, no line breaks, nothing else. Non-canonical
// trailing bits ("QR==") are rejected too, by re-encoding.
const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
function b64(s, what, where) {
  if (typeof s !== 'string') throw new Fail('format', `${what} is not a base64 string`, where);
  if (!B64_RE.test(s)) throw new Fail('format', `${what} is not RFC 4648 base64`, where);
  const b = Buffer.from(s, 'base64');
  if (b.toString('base64') !== s) throw new Fail('format', `${what} has non-canonical base64 padding bits`, where);
  return b;
}

const HEX_RE = /^(?:[0-9a-f]{2})*$/;
function hex(s, what = 'hex') {
  if (typeof s !== 'string' || !HEX_RE.test(s)) throw new Fail('format', `${what} is not lowercase hex`);
  return Buffer.from(s, 'hex');
}

// ---------------------------------------------------------------- strict JSON
// JSON.parse loses uint64 precision (the vectors hold 18446744073709551615 and
// ~1.76e18 nanosecond times) and cannot tell 3 from 3.0; so: a tiny RFC 8259 parser.
// Integers become BigInt, other numbers a JFloat; objects are null-prototype; duplicate
// member names are rejected.

class JFloat { constructor(text) { this.text = text; } }

function parseJSON(text) {
  let i = 0;
  const err = (m) => { throw new Fail('format', `malformed JSON at offset ${i}: ${m}`); };
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  let depth = 0;
  const value = () => {
    ws();
    if (i >= text.length) err('unexpected end');
    const c = text[i];
    if (c === '{') {
      if (++depth > 64) err('nesting too deep');
      i++; const o = Object.create(null); ws();
      if (text[i] === '}') { i++; depth--; return o; }
      for (;;) {
        ws(); if (text[i] !== '"') err('expected member name');
        const k = str();
        if (Object.prototype.hasOwnProperty.call(o, k)) err(`duplicate member name ${JSON.stringify(k)}`);
        ws(); if (text[i] !== ':') err('expected :'); i++;
        o[k] = value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; depth--; return o; }
        err('expected , or }');
      }
    }
    if (c === '[') {
      if (++depth > 64) err('nesting too deep');
      i++; const a = []; ws();
      if (text[i] === ']') { i++; depth--; return a; }
      for (;;) {
        a.push(value()); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; depth--; return a; }
        err('expected , or ]');
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(lit, i)) { i += lit.length; return v; }
    }
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) err('unexpected character');
    i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) return BigInt(m[0]);
    return new JFloat(m[0]);
  };
  const str = () => {
    i++; let out = '';
    for (;;) {
      if (i >= text.length) err('unterminated string');
      const c = text[i++];
      if (c === '"') return out;
      if (c < ' ') err('control character in string');
      if (c !== '\\') { out += c; continue; }
      const e = text[i++];
      const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) { out += simple[e]; continue; }
      if (e !== 'u') err('bad escape');
      const h = text.slice(i, i + 4);
      if (!/^[0-9a-fA-F]{4}$/.test(h)) err('bad \\u escape');
      out += String.fromCharCode(parseInt(h, 16)); i += 4;
    }
  };
  const v = value(); ws();
  if (i !== text.length) err('trailing characters');
  return v;
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof JFloat);
function member(o, k, where) {
  if (!Object.prototype.hasOwnProperty.call(o, k)) throw new Fail('format', `missing member "${k}"`, where);
  return o[k];
}
function jUint(v, what, where, max = U64_MAX) {
  if (typeof v !== 'bigint' || v < 0n || v > max) throw new Fail('format', `${what} is not an integer in 0..${max}`, where);
  return v;
}
function jArray(v, what, where) {
  if (!Array.isArray(v)) throw new Fail('format', `${what} is not a list`, where);
  return v;
}

// ---------------------------------------------------------------- canonical msgpack
// Schema-driven and strict: every value is checked against the type the schema
// expects and against the shortest-encoding table of FORMAT.md 1.1.

class Reader {
  constructor(buf) { this.b = buf; this.p = 0; }
  need(n) { if (this.p + n > this.b.length) throw new Error('truncated'); }
  u8() { this.need(1); return this.b[this.p++]; }
  be(n) { this.need(n); let v = 0n; for (let k = 0; k < n; k++) v = (v << 8n) | BigInt(this.b[this.p++]); return v; }
  bytes(n) { this.need(n); const s = this.b.subarray(this.p, this.p + n); this.p += n; return Buffer.from(s); }
}

const TYPE_NAME = (t) => {
  if (t <= 0x7f) return 'positive fixint';
  if (t >= 0x80 && t <= 0x8f) return 'fixmap';
  if (t >= 0x90 && t <= 0x9f) return 'fixarray';
  if (t >= 0xa0 && t <= 0xbf) return 'fixstr';
  if (t >= 0xe0) return 'negative fixint';
  return { 0xc0: 'nil', 0xc1: 'never-used', 0xc2: 'false', 0xc3: 'true', 0xc4: 'bin8', 0xc5: 'bin16', 0xc6: 'bin32',
    0xc7: 'ext8', 0xc8: 'ext16', 0xc9: 'ext32', 0xca: 'float32', 0xcb: 'float64', 0xcc: 'uint8', 0xcd: 'uint16',
    0xce: 'uint32', 0xcf: 'uint64', 0xd0: 'int8', 0xd1: 'int16', 0xd2: 'int32', 0xd3: 'int64', 0xd4: 'fixext1',
    0xd5: 'fixext2', 0xd6: 'fixext4', 0xd7: 'fixext8', 0xd8: 'fixext16', 0xd9: 'str8', 0xda: 'str16', 0xdb: 'str32',
    0xdc: 'array16', 0xdd: 'array32', 0xde: 'map16', 0xdf: 'map32' }[t];
};

function readUint(r, name) {
  const t = r.u8();
  if (t <= 0x7f) return BigInt(t);
  const widths = { 0xcc: [1, 0x80n], 0xcd: [2, 0x100n], 0xce: [4, 0x10000n], 0xcf: [8, 0x100000000n] };
  if (!(t in widths)) throw new Error(`${name}: expected an unsigned integer, found ${TYPE_NAME(t)}`);
  const [n, min] = widths[t];
  const v = r.be(n);
  if (v < min) throw new Error(`${name}: non-canonical integer encoding (${TYPE_NAME(t)} for ${v})`);
  return v;
}
function readLen(r, t, name, kinds) {
  // kinds: { tag: [byte width of length, minimum length for this tag] }
  if (!(t in kinds)) return null;
  const [n, min] = kinds[t];
  const len = Number(r.be(n));
  if (len < min) throw new Error(`${name}: non-canonical length encoding (${TYPE_NAME(t)} for ${len} bytes)`);
  return len;
}
function readStr(r, name) {
  const t = r.u8();
  let len;
  if (t >= 0xa0 && t <= 0xbf) len = t - 0xa0;
  else {
    len = readLen(r, t, name, { 0xd9: [1, 32], 0xda: [2, 256], 0xdb: [4, 65536] });
    if (len === null) throw new Error(`${name}: expected str, found ${TYPE_NAME(t)}`);
  }
  const raw = r.bytes(len);
  try { return { s: utf8.decode(raw), n: len }; } catch { throw new Error(`${name}: invalid UTF-8`); }
}
function readBin(r, name) {
  const t = r.u8();
  const len = readLen(r, t, name, { 0xc4: [1, 0], 0xc5: [2, 256], 0xc6: [4, 65536] });
  if (len === null) throw new Error(`${name}: expected bin, found ${TYPE_NAME(t)}`);
  return r.bytes(len);
}
function readArrayHeader(r) {
  const t = r.u8();
  if (t >= 0x90 && t <= 0x9f) return t - 0x90;
  if (t === 0xdc) {
    const n = Number(r.be(2));
    if (n < 16) throw new Error(`non-canonical array16 for ${n} elements`);
    return n;
  }
  throw new Error(`expected an array, found ${TYPE_NAME(t)}`);
}

// schema: [[name, kind, check?]]; kind 'uint' | 'str' | 'bin'. Element 0 is the version.
function decodeArray(buf, what, schema, knownVersion = 1n) {
  const r = new Reader(buf);
  let count;
  try { count = readArrayHeader(r); } catch (e) { throw new Error(`${what}: ${e.message}`); }
  const out = {};
  try {
    if (count === 0) throw new Error('empty array');
    const version = readUint(r, 'version');
    if (version !== knownVersion) throw new Error(`unknown version ${version} (this verifier knows version ${knownVersion})`);
    if (count !== schema.length) throw new Error(`array of ${count} elements, version ${knownVersion} has ${schema.length}`);
    out.version = version;
    for (const [name, kind, check] of schema.slice(1)) {
      let v;
      if (kind === 'uint') v = readUint(r, name);
      else if (kind === 'str') { const x = readStr(r, name); v = x.s; out[name + '_len'] = x.n; }
      else v = readBin(r, name);
      if (check) { const m = check(v, out); if (m) throw new Error(`${name}: ${m}`); }
      out[name] = v;
    }
    if (r.p !== buf.length) throw new Error(`${buf.length - r.p} bytes after the array`);
  } catch (e) { throw new Error(`${what}: ${e.message}`); }
  return out;
}

const len32 = (v) => (v.length === 32 ? null : `must be 32 bytes, is ${v.length}`);
const isZero = (b) => b.every((x) => x === 0);

const ENVELOPE = [
  ['version', 'uint'],
  ['salt', 'bin', (v) => (v.length === 16 ? null : `must be 16 bytes, is ${v.length}`)],
  ['topic', 'str', (v, o) => null],
  ['received_ns', 'uint'],
  ['payload', 'bin', (v) => (v.length <= 262144 ? null : `${v.length} bytes, limit 262144`)],
];
function decodeEnvelope(buf) {
  const e = decodeArray(buf, 'envelope', ENVELOPE);
  if (e.topic_len < 1 || e.topic_len > 65535) throw new Error(`envelope: topic is ${e.topic_len} bytes, must be 1..65535`);
  return e;
}

const HEADER = [
  ['version', 'uint'],
  ['gateway_id', 'str'],
  ['height', 'uint'],
  ['prev_hash', 'bin', len32],
  ['log_root', 'bin', len32],
  ['batch_root', 'bin', len32],
  ['leaf_count', 'uint', (v) => (v >= 1n && v <= U32_MAX ? null : `${v} not in 1..2^32-1`)],
  ['first_received_ns', 'uint'],
  ['last_received_ns', 'uint'],
  ['created_ns', 'uint'],
  ['key_id', 'bin', len32],
];
// Version 2 (section 5.3): a rotation header, version 1's fields then new_key.
const HEADER2 = [
  ...HEADER.map(([n, k, c]) => (n === 'leaf_count' ? [n, k, (v) => (v === 0n ? null : `${v}, a rotation header has 0`)] : [n, k, c])),
  ['new_key', 'bin', len32],
];
const EMPTY_TREE = createHash('sha256').update(Buffer.alloc(0)).digest();
function decodeHeader(buf) {
  // The version is element 0; the array length follows from it (11 or 12 elements).
  const v2 = buf.length > 1 && buf[1] === 2;
  const h = v2 ? decodeArray(buf, 'header', HEADER2, 2n) : decodeArray(buf, 'header', HEADER);
  if (h.gateway_id_len < 1 || h.gateway_id_len > 128) throw new Error(`header: gateway_id is ${h.gateway_id_len} bytes, must be 1..128`);
  if (!(h.first_received_ns <= h.last_received_ns && h.last_received_ns <= h.created_ns))
    throw new Error('header: not first_received_ns <= last_received_ns <= created_ns');
  // "32 zero bytes at height 0 and only there" -- treated as a field rule (=> format).
  if ((h.height === 0n) !== isZero(h.prev_hash))
    throw new Error(h.height === 0n ? 'header: prev_hash is not zero at height 0' : 'header: prev_hash is zero above height 0');
  if (v2) {
    if (!h.batch_root.equals(EMPTY_TREE)) throw new Error('header: a rotation header\'s batch_root is not the empty-tree hash');
    if (h.first_received_ns !== h.created_ns) throw new Error('header: a rotation header\'s three times differ');
    if (sha256(h.new_key).equals(h.key_id)) throw new Error('header: new_key is the signing key');
  }
  return h;
}

const popcount = (n) => { let c = 0; while (n > 0n) { c += Number(n & 1n); n >>= 1n; } return c; };
const HEADREC = [
  ['version', 'uint'],
  ['height', 'uint'],
  ['prev_hash', 'bin', len32],
  ['last_created_ns', 'uint'],
  ['log_nodes', 'bin', (v, o) => (v.length === 32 * popcount(o.height) ? null : `${v.length} bytes, must be 32*popcount(height)`)],
];
function decodeHeadRecord(buf) {
  const r = decodeArray(buf, 'head record', HEADREC);
  if (r.height === 0n && (!isZero(r.prev_hash) || r.last_created_ns !== 0n)) throw new Error('head record: height 0 needs zero prev_hash and last_created_ns');
  return r;
}

// Canonical encoder (used to re-encode decoded values, and for the head record).
function encUint(v) {
  v = BigInt(v);
  if (v < 0n || v > U64_MAX) throw new Error('uint out of range');
  if (v <= 0x7fn) return Buffer.from([Number(v)]);
  const [tag, n] = v <= 0xffn ? [0xcc, 1] : v <= 0xffffn ? [0xcd, 2] : v <= 0xffffffffn ? [0xce, 4] : [0xcf, 8];
  const b = Buffer.alloc(1 + n); b[0] = tag;
  for (let k = n; k >= 1; k--) { b[k] = Number(v & 0xffn); v >>= 8n; }
  return b;
}
function encLenTag(len, small, tags) {
  if (small !== null && len <= small[1]) return Buffer.from([small[0] + len]);
  const [t8, t16, t32] = tags;
  if (t8 !== null && len <= 0xff) return Buffer.from([t8, len]);
  if (len <= 0xffff) return Buffer.from([t16, len >> 8, len & 0xff]);
  const b = Buffer.alloc(5); b[0] = t32; b.writeUInt32BE(len, 1); return b;
}
const encStr = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([encLenTag(b.length, [0xa0, 31], [0xd9, 0xda, 0xdb]), b]); };
const encBin = (b) => Buffer.concat([encLenTag(b.length, null, [0xc4, 0xc5, 0xc6]), b]);
function encArray(schema, obj) {
  const parts = [encLenTag(schema.length, [0x90, 15], [null, 0xdc, 0xdd])];
  for (const [name, kind] of schema) parts.push(kind === 'uint' ? encUint(obj[name]) : kind === 'str' ? encStr(obj[name]) : encBin(obj[name]));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- Merkle (RFC 9162 2.1)

const leafHash = (data) => sha256(B0, data);
const nodeHash = (l, r) => sha256(B1, l, r);

function mth(leafHashes) {
  const n = leafHashes.length;
  if (n === 0) return EMPTY_ROOT;
  if (n === 1) return leafHashes[0];
  let k = 1; while (k * 2 < n) k *= 2;
  return nodeHash(mth(leafHashes.slice(0, k)), mth(leafHashes.slice(k)));
}

// FORMAT.md section 2 pseudocode; BigInt because JS bitwise ops on Number are 32-bit.
function pathLength(index, size) {
  let length = 0; let last = size - 1n;
  while (last > 0n) {
    if ((index | 1n) <= last) length++;
    index >>= 1n; last >>= 1n;
  }
  return length;
}

// RFC 9162 2.1.3.2 plus the exact-length rule. index/size BigInt.
function verifyInclusion(leaf, index, size, path, root) {
  if (!(index >= 0n && index < size)) return false;
  if (path.length !== pathLength(index, size)) return false;
  let fn = index; let sn = size - 1n; let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1n) === 0n) while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n && r.equals(root);
}

// RFC 9162 2.1.4.2 consistency proof, plus an exact-length rule. FORMAT.md says "same
// exact-length rule" but gives no length function for consistency proofs; this one is
// derived (path_length(size1-1, size2) minus the levels of the size1 subtree, plus one
// seed hash unless size1 is a power of two). size1 == size2: empty proof and equal roots;
// otherwise 0 < size1 < size2 (consistency from the empty tree is refused).
const isPow2 = (n) => n > 0n && (n & (n - 1n)) === 0n;
function consistencyLength(size1, size2) {
  let shift = 0; for (let n = size1; (n & 1n) === 0n; n >>= 1n) shift++;
  return pathLength(size1 - 1n, size2) - shift + (isPow2(size1) ? 0 : 1);
}
function verifyConsistency(size1, size2, root1, root2, proof) {
  if (size1 === size2) return proof.length === 0 && root1.equals(root2);
  if (!(size1 > 0n && size1 < size2)) return false;
  if (proof.length !== consistencyLength(size1, size2)) return false;
  const c = isPow2(size1) ? [root1, ...proof] : proof;
  if (c.length === 0) return false;
  let fn = size1 - 1n; let sn = size2 - 1n;
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = c[0]; let sr = c[0];
  for (const x of c.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(x, fr); sr = nodeHash(x, sr);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = nodeHash(sr, x);
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n && fr.equals(root1) && sr.equals(root2);
}

// Block-log frontier (FORMAT.md 5.2 / 7): roots of the perfect subtrees, left to right.
class Frontier {
  constructor(size = 0n, nodes = []) { this.size = size; this.nodes = nodes; }
  append(data) {
    let node = leafHash(data);
    for (let s = this.size; (s & 1n) === 1n; s >>= 1n) node = nodeHash(this.nodes.pop(), node);
    this.nodes.push(node); this.size += 1n;
  }
  root() {
    if (this.nodes.length === 0) return EMPTY_ROOT;
    let acc = this.nodes[this.nodes.length - 1];
    for (let k = this.nodes.length - 2; k >= 0; k--) acc = nodeHash(this.nodes[k], acc);
    return acc;
  }
}

// ---------------------------------------------------------------- keys

function loadPublicKey(pem) {
  const key = createPublicKey({ key: pem, format: 'pem' });
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`not an Ed25519 key (${key.asymmetricKeyType})`);
  const raw = Buffer.from(key.export({ format: 'jwk' }).x, 'base64url');
  if (raw.length !== 32) throw new Error('Ed25519 key is not 32 bytes');
  return { key, raw, keyId: sha256(raw) };
}
// A raw 32-byte Ed25519 public key (a rotation header's new_key) as a key object.
function rawKey(raw) {
  const der = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
  let key = null;
  try { key = createPublicKey({ key: der, format: 'der', type: 'spki' }); } catch { key = null; }
  return { key, raw, keyId: sha256(raw) };
}
function sigOk(key, msg, sig) {
  if (key.key === null) return false;
  if (sig.length !== 64) return false;
  try { return edVerify(null, msg, key.key, sig); } catch { return false; }
}

// ---------------------------------------------------------------- chain (5.2)

class ChainVerifier {
  // trusted: array of loadPublicKey() results. start: optional decoded head record.
  constructor(trusted, start = null) {
    this.keys = new Map(trusted.map((k) => [k.keyId.toString('hex'), k]));
    this.revoked = new Set();
    this.gatewayId = null;
    if (start) {
      this.expected = start.height; this.prevHash = start.prev_hash; this.lastCreated = start.last_created_ns;
      const nodes = []; for (let k = 0; k < start.log_nodes.length; k += 32) nodes.push(start.log_nodes.subarray(k, k + 32));
      this.log = new Frontier(start.height, nodes);
    } else {
      this.expected = 0n; this.prevHash = Buffer.alloc(32); this.lastCreated = null; this.log = new Frontier();
    }
  }
  // returns null or {reason, height, message}
  push(headerBytes, signature) {
    const at = this.expected;
    let h;
    try { h = decodeHeader(headerBytes); } catch (e) { return { reason: 'format', height: at, message: e.message }; }
    const k = this.keys.get(h.key_id.toString('hex'));
    if (!k && this.revoked.has(h.key_id.toString('hex'))) return { reason: 'revoked-key', height: h.height, message: `key_id ${h.key_id.toString('hex')} was revoked by a rotation` };
    if (!k) return { reason: 'unknown-key', height: h.height, message: `key_id ${h.key_id.toString('hex')} is not trusted` };
    if (!sigOk(k, headerBytes, signature)) return { reason: 'signature', height: h.height, message: 'Ed25519 signature does not verify' };
    if (this.gatewayId === null) this.gatewayId = h.gateway_id;
    else if (h.gateway_id !== this.gatewayId) return { reason: 'gateway-id', height: h.height, message: `gateway_id ${JSON.stringify(h.gateway_id)} != ${JSON.stringify(this.gatewayId)}` };
    if (h.height < this.expected) return { reason: 'duplicate-height', height: h.height, message: `height ${h.height}, expected ${this.expected}` };
    if (h.height > this.expected) return { reason: 'height-gap', height: h.height, message: `height ${h.height}, expected ${this.expected}` };
    if (!h.prev_hash.equals(this.prevHash)) return { reason: 'prev-hash', height: h.height, message: 'prev_hash is not the previous block_hash' };
    if (!h.log_root.equals(this.log.root())) return { reason: 'log-root', height: h.height, message: 'log_root is not the root of the earlier block hashes' };
    if (this.lastCreated !== null && h.created_ns < this.lastCreated) return { reason: 'time-backwards', height: h.height, message: `created_ns ${h.created_ns} < ${this.lastCreated}` };
    if (h.version === 2n) {
      const nk = rawKey(h.new_key);
      if (this.revoked.has(nk.keyId.toString('hex'))) return { reason: 'rotation', height: h.height, message: 'the rotation names a revoked key' };
      for (const id of this.keys.keys()) this.revoked.add(id);
      this.keys = new Map([[nk.keyId.toString('hex'), nk]]);
    }
    const bh = sha256(headerBytes);
    this.log.append(bh); this.prevHash = bh; this.lastCreated = h.created_ns; this.expected += 1n;
    this.last = h;
    return null;
  }
  headRecord() {
    return encArray(HEADREC, { version: 1n, height: this.expected, prev_hash: this.prevHash,
      last_created_ns: this.lastCreated ?? 0n, log_nodes: Buffer.concat(this.log.nodes) });
  }
}

// ---------------------------------------------------------------- bundle (8.1)

function verifyBundleText(text, trustedKey, trustedHead = null) {
  const readings = [];
  try {
    let b;
    b = parseJSON(text);
    if (!isObj(b)) throw new Fail('format', 'the bundle is not a JSON object');
    // 1. version
    const fmt = b.format;
    if (fmt !== 'anchorgate-proof/1' && fmt !== 'anchorgate-proof/2')
      throw new Fail('version', `format is ${fmt === undefined ? 'missing' : typeof fmt === 'string' ? JSON.stringify(fmt) : 'not a string'}; this verifier knows "anchorgate-proof/1" and "anchorgate-proof/2"`);
    const rotating = fmt === 'anchorgate-proof/2';
    // 2. key
    const kid = member(b, 'key_id');
    if (typeof kid !== 'string') throw new Fail('format', 'key_id is not a string');
    if (kid !== trustedKey.keyId.toString('hex')) throw new Fail('key', `key_id ${kid} is not the trusted key's ${trustedKey.keyId.toString('hex')}`);
    const gw = member(b, 'gateway_id');
    if (typeof gw !== 'string') throw new Fail('format', 'gateway_id is not a string');

    // Section 8.2: the key schedule. [first height, key]: the trusted key from 0, then
    // each rotation's new_key from the height after the rotation block.
    const schedule = [[0n, trustedKey]];
    const rotationBytes = new Map();
    const keyFor = (h, where) => {
      if (!rotating) {
        if (h.version !== 1n) throw new Fail('format', 'a version 2 header in an anchorgate-proof/1 bundle', where);
        if (!h.key_id.equals(trustedKey.keyId)) throw new Fail('key', 'header key_id is not the trusted key', where);
        return trustedKey;
      }
      const inEffect = schedule.filter(([first]) => first <= h.height);
      const current = inEffect[inEffect.length - 1][1];
      if (h.key_id.equals(current.keyId)) return current;
      if (inEffect.some(([, k]) => k.keyId.equals(h.key_id))) throw new Fail('revoked-key', `key ${h.key_id.toString('hex')} was revoked before height ${h.height}`, where);
      throw new Fail('unknown-key', `no rotation before height ${h.height} introduced key ${h.key_id.toString('hex')}`, where);
    };
    const listed = (blk, H, where) => {
      if (rotating && blk.h.version === 2n && blk.h.height < H) {
        const r = rotationBytes.get(blk.h.height);
        if (!r || !r.equals(blk.bytes)) throw new Fail('rotation', 'a rotation block the bundle\'s rotations do not list', where);
      }
    };
    const checkHeader = (entry, where) => {
      if (!isObj(entry)) throw new Fail('format', 'not an object', where);
      const claimed = jUint(member(entry, 'height', where), 'height', where);
      const bytes = b64(member(entry, 'header', where), 'header', where);
      const sig = b64(member(entry, 'signature', where), 'signature', where);
      let h;
      try { h = decodeHeader(bytes); } catch (e) { throw new Fail('format', e.message, where); }
      const signer = keyFor(h, where);
      if (h.gateway_id !== gw) throw new Fail('gateway', `header gateway_id ${JSON.stringify(h.gateway_id)} != bundle's ${JSON.stringify(gw)}`, where);
      if (!sigOk(signer, bytes, sig)) throw new Fail('signature', 'Ed25519 signature does not verify', where);
      // FORMAT.md gives no check name for this one; 'format' is a guess.
      if (claimed !== h.height) throw new Fail('format', `claimed height ${claimed} != header height ${h.height}`, where);
      return { h, bytes, hash: sha256(bytes) };
    };

    // 3. rotations (anchorgate-proof/2 only): follow the keys from the trusted one.
    const rotations = [];
    if (rotating) {
      const list = jArray(member(b, 'rotations'), 'rotations');
      if (list.length > MAX_PROOF) throw new Fail('format', `more than ${MAX_PROOF} rotations`);
      list.forEach((entry, n) => {
        const where = `rotations[${n}]`;
        const rot = checkHeader(entry, where);
        if (rot.h.version !== 2n) throw new Fail('rotation', `block ${rot.h.height} is not a rotation block`, where);
        const last = rotations.length ? rotations[rotations.length - 1].h.height : -1n;
        if (!(rot.h.height > last)) throw new Fail('rotation', `rotation at ${rot.h.height} is not above the one before`, where);
        const nk = rawKey(rot.h.new_key);
        if (schedule.some(([, k]) => k.keyId.equals(nk.keyId))) throw new Fail('rotation', 'the rotation names a key used before', where);
        schedule.push([rot.h.height + 1n, nk]);
        rotationBytes.set(rot.h.height, rot.bytes);
        rotations.push({ ...rot, entry, where });
      });
    }

    // 4. head
    const head = checkHeader(member(b, 'head'), 'head');
    const H = head.h.height;
    const hashList = (entry, name, where) => {
      const list = jArray(member(entry, name, where), name, where);
      if (list.length > MAX_PROOF) throw new Fail('format', `${name} has ${list.length} hashes, limit ${MAX_PROOF}`, where);
      return list.map((p, j) => {
        const x = b64(p, `${name}[${j}]`, where);
        if (x.length !== 32) throw new Fail('format', `${name}[${j}] is ${x.length} bytes, not 32`, where);
        return x;
      });
    };
    for (const rot of rotations) {
      const ht = rot.h.height;
      if (!(ht < H)) throw new Fail('chain-truncated', `rotation block ${ht} is not below the head's height ${H}`, rot.where);
      const logSize = jUint(member(rot.entry, 'log_size', rot.where), 'log_size', rot.where);
      if (logSize !== H) throw new Fail('size-mismatch', `log_size ${logSize} != head height ${H}`, rot.where);
      const path = hashList(rot.entry, 'log_proof', rot.where);
      if (!verifyInclusion(leafHash(rot.hash), ht, H, path, head.h.log_root))
        throw new Fail('block-in-chain', `rotation block ${ht} is not proven in the head's block log`, rot.where);
    }

    // 4. extends (head-extension), then trusted-head
    let ext = null;
    if (Object.prototype.hasOwnProperty.call(b, 'extends')) {
      const where = 'extends';
      // Header checks keep their own names (format/key/gateway/signature), as for
      // blocks in step 5; FORMAT.md could also be read as naming them all head-extension.
      ext = checkHeader(b.extends, where);
      const lp = hashList(b.extends, 'log_proof', where);
      const cp = hashList(b.extends, 'consistency', where);
      const eh = ext.h.height;
      if (!(eh < H)) throw new Fail('head-extension', `extends height ${eh} is not below the head's ${H}`, where);
      if (!verifyInclusion(leafHash(ext.hash), eh, H, lp, head.h.log_root))
        throw new Fail('head-extension', `block ${eh} is not proven in the head's block log`, where);
      if (eh === 0n) {
        if (cp.length !== 0) throw new Fail('head-extension', 'consistency must be empty when height is 0', where);
      } else if (!verifyConsistency(eh, H, ext.h.log_root, head.h.log_root, cp)) {
        throw new Fail('head-extension', `block log of size ${eh} is not consistent with the head's of size ${H}`, where);
      }
      listed(ext, H, where);
    }
    if (trustedHead !== null && !head.hash.equals(trustedHead) && !(ext && ext.hash.equals(trustedHead)))
      throw new Fail('trusted-head', `neither the head's hash ${head.hash.toString('hex')}${ext ? ` nor extends' ${ext.hash.toString('hex')}` : ''} is the trusted ${trustedHead.toString('hex')}`, 'head');

    // 5. blocks
    const byHeight = new Map([[H, head.h]]);
    const blocks = jArray(member(b, 'blocks'), 'blocks');
    blocks.forEach((entry, n) => {
      const where = `blocks[${n}]`;
      const blk = checkHeader(entry, where);
      const logSize = jUint(member(entry, 'log_size', where), 'log_size', where);
      const path = hashList(entry, 'log_proof', where);
      const ht = blk.h.height;
      if (!(ht < H)) throw new Fail('chain-truncated', `block ${ht} is not below the head's height ${H}`, where);
      if (logSize !== H) throw new Fail('size-mismatch', `log_size ${logSize} != head height ${H}`, where);
      if (!verifyInclusion(leafHash(blk.hash), ht, H, path, head.h.log_root))
        throw new Fail('block-in-chain', `block ${ht} is not proven in the head's block log`, where);
      // "No height appears twice." -- no check name given; 'format' is a guess.
      if (byHeight.has(ht)) throw new Fail('format', `block height ${ht} appears twice`, where);
      listed(blk, H, where);
      byHeight.set(ht, blk.h);
    });

    // 6. readings
    const rs = jArray(member(b, 'readings'), 'readings');
    if (rs.length === 0) throw new Fail('format', 'readings is empty (at least one is required)');
    const seen = new Set();
    rs.forEach((entry, n) => {
      const where = `readings[${n}]`;
      if (!isObj(entry)) throw new Fail('format', 'not an object', where);
      const bh = jUint(member(entry, 'block_height', where), 'block_height', where);
      const li = jUint(member(entry, 'leaf_index', where), 'leaf_index', where);
      const bs = jUint(member(entry, 'batch_size', where), 'batch_size', where);
      const env = b64(member(entry, 'envelope', where), 'envelope', where);
      const path = hashList(entry, 'path', where);
      const h = byHeight.get(bh);
      if (!h) throw new Fail('missing-block', `block ${bh} is neither the head nor in blocks`, where);
      if (bs !== h.leaf_count) throw new Fail('size-mismatch', `batch_size ${bs} != leaf_count ${h.leaf_count}`, where);
      if (!(li < h.leaf_count)) throw new Fail('leaf-index', `leaf_index ${li} >= leaf_count ${h.leaf_count}`, where);
      // "no (block, index) pair appears twice" -- no check name given; 'format' is a guess.
      const key = `${bh}/${li}`;
      if (seen.has(key)) throw new Fail('format', `reading (${bh}, ${li}) appears twice`, where);
      seen.add(key);
      let envelope;
      try { envelope = decodeEnvelope(env); } catch (e) { throw new Fail('envelope', e.message, where); }
      const lh = leafHash(env);
      if (pathLength(li, h.leaf_count) !== path.length)
        throw new Fail('leaf-inclusion', `path has ${path.length} hashes, leaf ${li} of ${h.leaf_count} needs ${pathLength(li, h.leaf_count)}`, where);
      if (!verifyInclusion(lh, li, h.leaf_count, path, h.batch_root)) {
        // 8.1 step 7: up to 65,536 leaves, try the same path at every index whose
        // path length matches; above that, report leaf-inclusion.
        if (h.leaf_count <= 65536n) {
          for (let j = 0n; j < h.leaf_count; j++) {
            if (j !== li && pathLength(j, h.leaf_count) === path.length && verifyInclusion(lh, j, h.leaf_count, path, h.batch_root))
              throw new Fail('leaf-index', `the path proves leaf ${j}, not the claimed ${li}`, where);
          }
        }
        throw new Fail('leaf-inclusion', `envelope or path does not lead to block ${bh}'s batch_root`, where);
      }
      if (!(h.first_received_ns <= envelope.received_ns && envelope.received_ns <= h.last_received_ns))
        throw new Fail('time-range', `received_ns ${envelope.received_ns} outside the block's range`, where);
      readings.push([bh, li]);
    });
    return { valid: true, check: null, readings };
  } catch (e) {
    if (e instanceof Fail) return { valid: false, check: e.check, where: e.where, message: e.message, readings: [] };
    // MUST NOT crash: anything unexpected is a format failure.
    return { valid: false, check: 'format', where: null, message: `unexpected: ${e && e.message}`, readings: [] };
  }
}

// ---------------------------------------------------------------- CLI

const jsonLine = (o) => JSON.stringify(o, (k, v) => (typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v));

function cmdBundle(args) {
  if (args.length < 2 || args.length > 3) usage();
  const text = readText(args[0]);
  let key;
  try { key = loadPublicKey(readText(args[1])); } catch (e) { die(`cannot load public key: ${e.message}`); }
  let th = null;
  if (args.length === 3) {
    if (!/^[0-9a-fA-F]{64}$/.test(args[2])) die('trusted head must be 64 hex digits');
    th = Buffer.from(args[2].toLowerCase(), 'hex');
  }
  const r = verifyBundleText(text, key, th);
  console.log(jsonLine({ valid: r.valid, check: r.check, readings: r.readings }));
  if (!r.valid) console.error(`${r.check}${r.where ? ` (${r.where})` : ''}: ${r.message}`);
  process.exit(r.valid ? 0 : 1);
}

function cmdChain(args) {
  if (args.length !== 1) usage();
  const problems = [];
  let result;
  try {
    const v = parseJSON(readText(args[0]));
    const key = loadPublicKey(v.key.public_key_pem);
    if (key.raw.toString('hex') !== v.key.public_key) problems.push('public_key differs from the PEM');
    if (key.keyId.toString('hex') !== v.key.key_id) problems.push('key_id != SHA-256(public key)');
    const cv = new ChainVerifier([key]);
    result = null;
    for (const blk of v.blocks) {
      const hb = hex(blk.header); const sig = hex(blk.signature);
      const f = cv.push(hb, sig);
      if (f) { result = f; break; }
      // Cross-check the vector's fields and derived values against the decoded header.
      const h = cv.last; const hh = blk.height;
      for (const [name, kind] of HEADER) {
        if (name === 'version') continue;
        const want = kind === 'bin' ? blk[name] : kind === 'uint' ? blk[name] : blk[name];
        const got = kind === 'bin' ? h[name].toString('hex') : h[name];
        if (got !== want) problems.push(`block ${hh}: field ${name} ${got} != vector ${want}`);
      }
      if (!encArray(HEADER, h).equals(hb)) problems.push(`block ${hh}: re-encoding differs`);
      if (sha256(hb).toString('hex') !== blk.block_hash) problems.push(`block ${hh}: block_hash`);
      const lhs = blk.leaf_hashes.map((x) => hex(x));
      if (BigInt(lhs.length) !== h.leaf_count) problems.push(`block ${hh}: leaf_hashes count`);
      if (!mth(lhs).equals(h.batch_root)) problems.push(`block ${hh}: MTH(leaf_hashes) != batch_root`);
      blk.inclusion_paths.forEach((p, i) => {
        const path = p.map((x) => hex(x));
        if (!verifyInclusion(lhs[i], BigInt(i), h.leaf_count, path, h.batch_root)) problems.push(`block ${hh}: inclusion path ${i}`);
        // the same path must fail at every other index and at size+1
        for (let j = 0n; j < h.leaf_count; j++) if (j !== BigInt(i) && verifyInclusion(lhs[i], j, h.leaf_count, path, h.batch_root)) problems.push(`block ${hh}: path ${i} also verifies at ${j}`);
      });
      const rec = cv.headRecord();
      if (rec.toString('hex') !== blk.head_after) problems.push(`block ${hh}: head record ${rec.toString('hex')} != vector`);
      try { const d = decodeHeadRecord(hex(blk.head_after)); if (!encArray(HEADREC, d).equals(hex(blk.head_after))) problems.push(`block ${hh}: head record re-encode`); }
      catch (e) { problems.push(`block ${hh}: head record decode: ${e.message}`); }
    }
    // Resume from each head record and verify the rest of the chain from there.
    if (!result) for (let s = 0; s < v.blocks.length; s++) {
      const cv2 = new ChainVerifier([key], decodeHeadRecord(hex(v.blocks[s].head_after)));
      for (const blk of v.blocks.slice(s + 1)) { const f = cv2.push(hex(blk.header), hex(blk.signature)); if (f) { problems.push(`resume after ${s}: ${f.reason}`); break; } }
    }
    if (!result) result = { reason: null, height: cv.expected, message: 'ok' };
  } catch (e) {
    result = { reason: 'format', height: null, message: `unreadable vector file: ${e.message}` };
  }
  const valid = result.reason === null && problems.length === 0;
  console.log(jsonLine({ valid, reason: result.reason ?? (problems.length ? 'vector-mismatch' : null), height: result.height }));
  if (!valid) console.error([result.message, ...problems].join('\n'));
  process.exit(valid ? 0 : 1);
}

function cmdEnvelopes(args) {
  if (args.length !== 1) usage();
  const v = parseJSON(readText(args[0]));
  const problems = []; let n = 0;
  for (const c of v.cases) {
    n++;
    const buf = hex(c.envelope);
    let e;
    try { e = decodeEnvelope(buf); } catch (err) { problems.push(`case ${n}: ${err.message}`); continue; }
    if (e.version !== c.version) problems.push(`case ${n}: version`);
    if (e.salt.toString('hex') !== c.salt) problems.push(`case ${n}: salt`);
    if (e.topic !== c.topic) problems.push(`case ${n}: topic`);
    if (e.received_ns !== c.received_ns) problems.push(`case ${n}: received_ns ${e.received_ns} != ${c.received_ns}`);
    if (e.payload.toString('hex') !== c.payload) problems.push(`case ${n}: payload`);
    if (leafHash(buf).toString('hex') !== c.leaf_hash) problems.push(`case ${n}: leaf_hash`);
    if (!encArray(ENVELOPE, e).equals(buf)) problems.push(`case ${n}: re-encoding differs`);
  }
  // A few strictness probes derived from the spec's own example.
  const ex = hex('9501c41000000000000000000000000000000000a17400c400');
  const bad = {
    'uint16 for version 1': '95cd0001c41000000000000000000000000000000000a17400c400',
    'str for salt': '9501b000000000000000000000000000000000a17400c400',
    'bin for topic': '9501c41000000000000000000000000000000000c4017400c400',
    'str8 for a short topic': '9501c41000000000000000000000000000000000d9017400c400',
    'uint8 for received_ns 0': '9501c41000000000000000000000000000000000a174cc00c400',
    'false for received_ns': '9501c41000000000000000000000000000000000a174c2c400',
    'float for received_ns': '9501c41000000000000000000000000000000000a174ca00000000c400',
    'str for payload': '9501c41000000000000000000000000000000000a17400a0',
    '6 elements': '9601c41000000000000000000000000000000000a17400c40000',
    '4 elements': '9401c41000000000000000000000000000000000a17400',
    'trailing byte': '9501c41000000000000000000000000000000000a17400c40000',
    'truncated': '9501c41000000000000000000000000000000000a17400c4',
    'invalid UTF-8 topic': '9501c41000000000000000000000000000000000a1ff00c400',
    'empty topic': '9501c41000000000000000000000000000000000a000c400',
    'salt 15 bytes': '9501c40f000000000000000000000000000000a17400c400',
    'version 2': '9502c41000000000000000000000000000000000a17400c400',
    'array16 for 5': 'dc000501c41000000000000000000000000000000000a17400c400',
    'bin16 for empty payload': '9501c41000000000000000000000000000000000a17400c50000',
  };
  try { decodeEnvelope(ex); } catch (err) { problems.push(`spec example: ${err.message}`); }
  let rejected = 0;
  for (const [name, h] of Object.entries(bad)) {
    try { decodeEnvelope(hex(h)); problems.push(`accepted ${name}`); } catch { rejected++; }
  }
  const valid = problems.length === 0;
  console.log(jsonLine({ valid, cases: n, strictness_probes_rejected: rejected, problems }));
  process.exit(valid ? 0 : 1);
}

function cmdRfc6962(args) {
  if (args.length !== 1) usage();
  const v = parseJSON(readText(args[0]));
  const problems = [];
  for (const c of v.cases) {
    let ok;
    if ('size1' in c) {
      try {
        const r1 = hex(c.root1); const r2 = hex(c.root2); const path = (c.proof ?? []).map((x) => hex(x));
        ok = (c.size1 === c.size2 || (r1.length === 32 && r2.length === 32 && path.every((p) => p.length === 32)))
          && verifyConsistency(c.size1, c.size2, r1, r2, path);
      } catch { ok = false; }
      if (ok === c.want_error) problems.push(`${c.name}: got ${ok ? 'ok' : 'error'}`);
      continue;
    }
    try {
      const leaf = hex(c.leaf_hash); const root = hex(c.root);
      const path = (c.proof ?? []).map((x) => hex(x));
      ok = leaf.length === 32 && root.length === 32 && path.every((p) => p.length === 32)
        && verifyInclusion(leaf, BigInt(c.leaf_index), BigInt(c.tree_size), path, root);
    } catch { ok = false; }
    if (ok === c.want_error) problems.push(`${c.name}: got ${ok ? 'ok' : 'error'}`);
  }
  console.log(jsonLine({ valid: problems.length === 0, cases: v.cases.length, problems }));
  process.exit(problems.length ? 1 : 0);
}

// rotation.json: a chain across two key rotations, verified from key 0 alone, and
// bundles whose verdicts (valid, or the named failed check) are given.
function cmdRotation(args) {
  if (args.length !== 1) usage();
  const problems = [];
  let v;
  try { v = parseJSON(readText(args[0])); } catch (e) { die(`unreadable vector file: ${e.message}`); }
  const key = loadPublicKey(v.public_key_pem);
  if (key.keyId.toString('hex') !== v.keys[0].key_id) problems.push('key 0: key_id differs');
  const cv = new ChainVerifier([key]);
  for (const blk of v.blocks) {
    const hb = hex(blk.header);
    const f = cv.push(hb, hex(blk.signature));
    if (f) { problems.push(`block ${blk.height}: ${f.reason}: ${f.message}`); break; }
    const h = cv.last;
    if (h.version !== BigInt(blk.version)) problems.push(`block ${blk.height}: version`);
    if ((h.new_key ? h.new_key.toString('hex') : null) !== blk.new_key) problems.push(`block ${blk.height}: new_key`);
    if (!encArray(h.version === 2n ? HEADER2 : HEADER, h).equals(hb)) problems.push(`block ${blk.height}: re-encoding differs`);
    if (sha256(hb).toString('hex') !== blk.block_hash) problems.push(`block ${blk.height}: block_hash`);
    if (cv.headRecord().toString('hex') !== blk.head_after) problems.push(`block ${blk.height}: head record`);
  }
  for (const c of v.bundles) {
    const r = verifyBundleText(c.bundle_json, key);
    if ((r.valid ? null : r.check) !== c.expect) problems.push(`bundle "${c.name}": ${r.valid ? 'valid' : r.check}, expected ${c.expect ?? 'valid'} (${r.message ?? ''})`);
  }
  console.log(jsonLine({ valid: problems.length === 0, problems }));
  process.exit(problems.length ? 1 : 0);
}

function readText(p) {
  let buf;
  try { buf = readFileSync(p); } catch (e) { die(`cannot read ${p}: ${e.message}`); }
  try { return utf8.decode(buf); } catch { return '\u0000not utf-8'; } // parseJSON reports it as format
}
function die(m) { console.error(m); process.exit(2); }
function usage() {
  die('usage: verify.mjs bundle <bundle.json> <public.pem> [trusted-head-hex]\n       verify.mjs chain <chain.json>\n       verify.mjs rotation <rotation.json>\n       verify.mjs envelopes <envelopes.json>\n       verify.mjs rfc6962 <inclusion.json|consistency.json>\n       verify.mjs devices <device_signatures.json>\n       verify.mjs signed-reading <payload file> <topic> <device public key PEM>');
}

export { parseJSON, decodeArray, decodeEnvelope, decodeHeader, decodeHeadRecord, encArray, HEADER, HEADER2, ENVELOPE, HEADREC,
  verifyInclusion, verifyConsistency, consistencyLength, pathLength, mth, leafHash, Frontier, loadPublicKey, ChainVerifier, verifyBundleText };

const isMain = (() => { try { return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url)); } catch { return false; } })();
if (isMain) {
  const [cmd, ...rest] = process.argv.slice(2);
  // Section 10 lives in devices.mjs, which imports this module: loaded on demand.
  const devices = (name) => (args) => import('./devices.mjs').then((m) => m[name](args));
  ({ bundle: cmdBundle, chain: cmdChain, envelopes: cmdEnvelopes, rfc6962: cmdRfc6962, rotation: cmdRotation,
    devices: devices('cmdDevices'), 'signed-reading': devices('cmdSignedReading') }[cmd] ?? usage)(rest);
}
