// Reads what a step-model runner needs from an .onnx file without the onnx package: the metadata_props and the
// initializers (name, dtype, dims, raw_data/float_data/int64_data). Protobuf wire format, fields of onnx.proto.
import { readFileSync } from 'node:fs';

function* fields(buf, start = 0, end = buf.length) {
  let at = start;
  const varint = () => {
    let value = 0n, shift = 0n, byte;
    do { byte = buf[at++]; value |= BigInt(byte & 0x7f) << shift; shift += 7n; } while (byte & 0x80);
    return value;
  };
  while (at < end) {
    const key = Number(varint()), field = key >> 3, wire = key & 7;
    if (wire === 0) yield { field, wire, value: varint() };
    else if (wire === 1) { yield { field, wire, bytes: buf.subarray(at, at + 8) }; at += 8; }
    else if (wire === 5) { yield { field, wire, bytes: buf.subarray(at, at + 4) }; at += 4; }
    else if (wire === 2) { const n = Number(varint()); yield { field, wire, bytes: buf.subarray(at, at + n) }; at += n; }
    else throw new Error(`onnx: unsupported wire type ${wire}`);
  }
}

const TYPES = { 1: ['float32', Float32Array], 7: ['int64', BigInt64Array] };

function tensor(buf) {
  const t = { dims: [], name: '', dataType: 0, raw: null, floats: [], int64s: [] };
  for (const f of fields(buf)) {
    if (f.field === 1) f.wire === 2 ? t.dims.push(...readPackedVarints(f.bytes).map(Number)) : t.dims.push(Number(f.value));
    else if (f.field === 2) t.dataType = Number(f.value);
    else if (f.field === 4) t.floats.push(...new Float32Array(copy(f.bytes))); // packed (wire 2) or one fixed32 (wire 5)
    else if (f.field === 7) f.wire === 2 ? t.int64s.push(...readPackedVarints(f.bytes)) : t.int64s.push(BigInt.asIntN(64, f.value));
    else if (f.field === 8) t.name = f.bytes.toString('utf8');
    else if (f.field === 9) t.raw = copy(f.bytes);
    else if (f.field === 14 && Number(f.value) === 1) throw new Error(`onnx: initializer ${t.name} keeps its data outside the file`);
  }
  const [type, Array] = TYPES[t.dataType] ?? [];
  if (!type) throw new Error(`onnx: initializer ${t.name} has data type ${t.dataType}; float32 or int64 expected`);
  const data = t.raw ? new Array(t.raw) : type === 'int64' ? BigInt64Array.from(t.int64s) : Float32Array.from(t.floats);
  return { name: t.name, type, dims: t.dims, data };
}
function readPackedVarints(bytes) {
  const out = [];
  let at = 0;
  while (at < bytes.length) {
    let value = 0n, shift = 0n, byte;
    do { byte = bytes[at++]; value |= BigInt(byte & 0x7f) << shift; shift += 7n; } while (byte & 0x80);
    out.push(BigInt.asIntN(64, value));
  }
  return out;
}
const copy = bytes => { const b = new Uint8Array(bytes.length); b.set(bytes); return b.buffer; };

/** The model's metadata_props ({key: value}) and its main graph's initializers ({name: {type, dims, data}}). */
export function readModel(path) {
  const buf = readFileSync(path), metadata = {}, initializers = {};
  for (const f of fields(buf)) {
    if (f.field === 14) {
      const entry = {};
      for (const e of fields(f.bytes)) entry[e.field] = e.bytes.toString('utf8');
      metadata[entry[1]] = entry[2];
    } else if (f.field === 7) {
      for (const g of fields(f.bytes)) if (g.field === 5) { const t = tensor(g.bytes); initializers[t.name] = t; }
    }
  }
  return { metadata, initializers };
}
