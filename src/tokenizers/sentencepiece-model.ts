import { UnimeError } from '../errors.js';

/**
 * The parts of a sentencepiece ModelProto (sentencepiece_model.proto) that the tokenizer needs:
 * the pieces with their types, and the trainer/normalizer settings that change encoding or
 * decoding. Read with a minimal protobuf wire-format reader; unknown fields are skipped.
 */
export const enum PieceType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  /** 1 unigram, 2 bpe, 3 word, 4 char (TrainerSpec.ModelType). */
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  normalizerName: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
}

class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
  ) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.buf.length) throw this.corrupt('truncated varint');
      const b = this.buf[this.pos++]!;
      // ids and lengths fit in 2^53; the high bits of negative int32 varints are dropped below
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw this.corrupt('varint longer than 10 bytes');
    }
  }

  int32(): number {
    return this.varint() | 0;
  }

  float(): number {
    if (this.pos + 4 > this.buf.length) throw this.corrupt('truncated float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.buf.length) throw this.corrupt('field runs past the end of the file');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.pos += 4;
        return;
      default:
        throw this.corrupt(`unsupported protobuf wire type ${wireType}`);
    }
  }

  corrupt(why: string): UnimeError {
    return new UnimeError(`not a readable sentencepiece model (${why} at byte ${this.pos})`, {
      file: this.file,
      fix: 'the file is damaged or not a sentencepiece .model; download tokenizer.model again',
    });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

export function parseSentencePieceModel(buf: Uint8Array, file: string): SentencePieceModel {
  const model: SentencePieceModel = {
    pieces: [],
    modelType: 1,
    byteFallback: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    normalizerName: 'nmt_nfkc',
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
  };
  const r = new Reader(buf, file);
  while (!r.done) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 1 && wire === 2) model.pieces.push(readPiece(new Reader(r.bytes(), file)));
    else if (field === 2 && wire === 2) readTrainerSpec(new Reader(r.bytes(), file), model);
    else if (field === 3 && wire === 2) readNormalizerSpec(new Reader(r.bytes(), file), model);
    else r.skip(wire);
  }
  if (model.pieces.length === 0) throw r.corrupt('no pieces');
  return model;
}

function readPiece(r: Reader): SentencePiece {
  const p: SentencePiece = { piece: '', score: 0, type: PieceType.Normal };
  while (!r.done) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 1 && wire === 2) p.piece = utf8.decode(r.bytes());
    else if (field === 2 && wire === 5) p.score = r.float();
    else if (field === 3 && wire === 0) p.type = r.varint() as PieceType;
    else r.skip(wire);
  }
  return p;
}

function readTrainerSpec(r: Reader, m: SentencePieceModel): void {
  while (!r.done) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire !== 0) {
      r.skip(wire);
      continue;
    }
    const v = r.int32();
    if (field === 3) m.modelType = v;
    else if (field === 35) m.byteFallback = v !== 0;
    else if (field === 40) m.unkId = v;
    else if (field === 41) m.bosId = v;
    else if (field === 42) m.eosId = v;
    else if (field === 43) m.padId = v;
  }
}

function readNormalizerSpec(r: Reader, m: SentencePieceModel): void {
  while (!r.done) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 1 && wire === 2) m.normalizerName = utf8.decode(r.bytes());
    else if (field === 3 && wire === 0) m.addDummyPrefix = r.varint() !== 0;
    else if (field === 4 && wire === 0) m.removeExtraWhitespaces = r.varint() !== 0;
    else r.skip(wire);
  }
}

function encodeVarint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

interface FieldSpan {
  field: number;
  wire: number;
  /** Byte range of the whole field (key and value). */
  start: number;
  end: number;
  /** Byte range of a length-delimited field's payload. */
  payloadStart: number;
}

function fieldSpans(buf: Uint8Array, file: string): FieldSpan[] {
  const r = new Reader(buf, file);
  const spans: FieldSpan[] = [];
  while (!r.done) {
    const start = r.pos;
    const key = r.varint();
    const wire = key & 7;
    let payloadStart = -1;
    if (wire === 2) {
      const n = r.varint();
      payloadStart = r.pos;
      r.pos += n;
      if (r.pos > buf.length) throw r.corrupt('field runs past the end of the file');
    } else r.skip(wire);
    spans.push({ field: Math.floor(key / 8), wire, start, end: r.pos, payloadStart });
  }
  return spans;
}

/**
 * The same model with NormalizerSpec.add_dummy_prefix = false, as transformers loads a Llama-family
 * sentencepiece model when tokenizer_config.json says legacy: false (it adds the prefix space itself).
 */
export function withoutDummyPrefix(buf: Uint8Array, file: string): Uint8Array {
  const out: number[] = [];
  const push = (b: Uint8Array): void => {
    for (const x of b) out.push(x);
  };
  const normalizer = (payload: Uint8Array): number[] => {
    const inner: number[] = [];
    for (const f of fieldSpans(payload, file)) {
      if (f.field === 3 && f.wire === 0) continue;
      for (const x of payload.subarray(f.start, f.end)) inner.push(x);
    }
    inner.push(0x18, 0x00); // field 3 (add_dummy_prefix), varint 0
    return [0x1a, ...encodeVarint(inner.length), ...inner]; // field 3 (normalizer_spec), length-delimited
  };
  let seen = false;
  for (const f of fieldSpans(buf, file)) {
    if (f.field === 3 && f.wire === 2) {
      seen = true;
      out.push(...normalizer(buf.subarray(f.payloadStart, f.end)));
    } else push(buf.subarray(f.start, f.end));
  }
  if (!seen) out.push(...normalizer(new Uint8Array(0)));
  return Uint8Array.from(out);
}
