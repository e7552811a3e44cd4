/**
 * A small read-only zip reader for image archives (MMEB's images.zip): the central directory is read
 * once, members are read on demand with positional reads, stored (method 0) or deflated (method 8),
 * and checked against their CRC-32. ZIP64 archives (over 4 GiB or 65535 entries) are supported.
 */
import { promises as fsp } from 'node:fs';
import * as zlib from 'node:zlib';
import { promisify } from 'node:util';
import { UnimeError } from '../errors.js';

export class ZipError extends UnimeError {}

const inflateRaw = promisify(zlib.inflateRaw);

const EOCD_SIG = 0x06054b50;
const EOCD64_LOCATOR_SIG = 0x07064b50;
const EOCD64_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

export interface ZipEntry {
  name: string;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

export interface ZipArchive {
  readonly path: string;
  /** Member names (files only, no directory entries), in archive order. */
  readonly names: string[];
  has(name: string): boolean;
  entry(name: string): ZipEntry | undefined;
  /** The member's uncompressed bytes. */
  read(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Open a zip file and read its central directory. */
export async function openZip(file: string): Promise<ZipArchive> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ZipError(code === 'ENOENT' ? 'zip archive not found' : `could not open zip archive: ${(e as Error).message}`, { file, cause: e });
  }
  try {
    const entries = await readCentralDirectory(fh, file);
    return new ZipReader(file, fh, entries);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

async function readAt(fh: fsp.FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

function u64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('64-bit zip field too large');
  return Number(v);
}

async function readCentralDirectory(fh: fsp.FileHandle, file: string): Promise<Map<string, ZipEntry>> {
  const corrupt = (what: string) => new ZipError(`not a readable zip archive: ${what}`, { file, fix: 're-download the archive (it may be truncated)' });
  const size = (await fh.stat()).size;
  // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the end of the file.
  const tailLen = Math.min(size, 22 + 65535);
  const tail = await readAt(fh, size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw corrupt('no end-of-central-directory record');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== EOCD64_LOCATOR_SIG) throw corrupt('ZIP64 locator missing');
    const rec = await readAt(fh, u64(tail, loc + 8), 56);
    if (rec.length < 56 || rec.readUInt32LE(0) !== EOCD64_SIG) throw corrupt('ZIP64 end-of-central-directory record missing');
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  if (cdOffset + cdSize > size) throw corrupt('central directory lies past the end of the file');
  const cd = await readAt(fh, cdOffset, cdSize);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) throw corrupt(`central directory entry ${i} is damaged`);
    const method = cd.readUInt16LE(p + 10);
    const crc32 = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let uncompressed = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // ZIP64 extra field (id 1): the 64-bit values of whichever fields above are 0xffffffff, in order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        if (uncompressed === 0xffffffff) (uncompressed = u64(cd, q)), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(cd, q)), (q += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(cd, q);
      }
      e += 4 + len;
    }
    if (!name.endsWith('/')) entries.set(name, { name, method, crc32, compressedSize, size: uncompressed, localHeaderOffset });
    p = extraEnd + commentLen;
  }
  return entries;
}

class ZipReader implements ZipArchive {
  readonly names: string[];
  private closed = false;

  constructor(
    readonly path: string,
    private readonly fh: fsp.FileHandle,
    private readonly entries: Map<string, ZipEntry>,
  ) {
    this.names = [...entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  async read(name: string): Promise<Uint8Array> {
    const entry = this.entries.get(name);
    if (!entry) throw this.notFound(name);
    if (this.closed) throw new ZipError('read after close()', { file: this.path, field: name, fix: 'open the archive again' });
    const damaged = (what: string) => new ZipError(`member is damaged: ${what}`, { file: this.path, field: name, fix: 're-download the archive' });
    const local = await readAt(this.fh, entry.localHeaderOffset, 30);
    if (local.length < 30 || local.readUInt32LE(0) !== LOCAL_SIG) throw damaged('no local file header');
    const dataStart = entry.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    const raw = await readAt(this.fh, dataStart, entry.compressedSize);
    if (raw.length !== entry.compressedSize) throw damaged('data ends early');
    let data: Buffer;
    if (entry.method === 0) data = raw;
    else if (entry.method === 8) {
      try {
        data = await inflateRaw(raw);
      } catch (e) {
        throw damaged(`cannot inflate (${(e as Error).message})`);
      }
    } else {
      throw new ZipError(`compression method ${entry.method} is not supported (only stored and deflate)`, {
        file: this.path,
        field: name,
        fix: 're-pack the archive with deflate compression (zip -r, or Python zipfile with ZIP_DEFLATED)',
      });
    }
    if (data.length !== entry.size) throw damaged(`${data.length} bytes, the directory says ${entry.size}`);
    if (typeof zlib.crc32 === 'function' && zlib.crc32(data) >>> 0 !== entry.crc32) throw damaged('CRC-32 mismatch');
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  private notFound(name: string): ZipError {
    const base = name.slice(name.lastIndexOf('/') + 1);
    const similar = this.names.filter((n) => n === base || n.endsWith(`/${base}`)).slice(0, 3);
    return new ZipError(`no member named ${JSON.stringify(name)} (the archive has ${this.names.length} files)`, {
      file: this.path,
      field: name,
      fix: similar.length
        ? `did you mean ${similar.map((s) => JSON.stringify(s)).join(' or ')}? (paths are relative to the archive root)`
        : 'check the image path against the archive listing (`unzip -l`)',
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
