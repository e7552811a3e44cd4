/**
 * A fake Hugging Face Hub on 127.0.0.1 for the hub tests: the endpoints unime's client calls,
 * with repos held in memory as commits (a commit is applied whole or not at all, like the real
 * Hub), plus a second "CDN/storage" server on another port that serves LFS blobs (with Range) and
 * takes LFS uploads. Faults can be injected per request: a status (500, 429, 401...), a dropped
 * connection before the answer, a connection dropped midway through a body, a stall, corrupted
 * bytes, or a dropped answer after the work was done.
 *
 * Guard rails: every server listens on port 0, is unref'd, stops itself after `lifetimeMs`, and
 * answers 503 once `maxRequests` is passed (so a runaway retry loop fails a test instead of
 * hanging it).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';

export type RepoKind = 'model' | 'dataset';

export interface StoredFile {
  content: Buffer;
  lfs: boolean;
  sha256: string;
  oid: string;
}

interface Commit {
  sha: string;
  parent: string | undefined;
  message: string;
  files: Map<string, StoredFile>;
}

export interface FakeRepo {
  id: string;
  type: RepoKind;
  private: boolean;
  refs: Map<string, string>;
  commits: Map<string, Commit>;
}

export interface RequestRecord {
  server: 'hub' | 'cdn';
  method: string;
  /** pathname + search, decoded as sent. */
  url: string;
  range: string | undefined;
  hasAuth: boolean;
  status?: number;
}

export type FaultKind = 'status' | 'drop' | 'drop-mid-body' | 'stall' | 'corrupt' | 'drop-after';

export interface Fault {
  server?: 'hub' | 'cdn';
  method?: string;
  path?: RegExp;
  kind: FaultKind;
  status?: number;
  /** X-Error-Code to send with a status fault (RepoNotFound, GatedRepo...). */
  errorCode?: string;
  /** For drop-mid-body / stall: bytes sent before the trouble (default half the body). */
  afterBytes?: number;
  /** How many matching requests it hits (default 1). */
  times?: number;
}

export interface FakeHubOptions {
  /** Valid tokens; a request with any other bearer token gets 401. */
  tokens?: string[];
  /** Preupload: files at least this big, or with a NUL in their sample, go through LFS (default 10 MiB, like the Hub). */
  lfsThreshold?: number;
  /** LFS objects bigger than this use the multipart transfer (default: never). */
  multipartThreshold?: number;
  multipartChunk?: number;
  /** Tree listing page size (default 1000). */
  treePageSize?: number;
  /** Whether resolve/CDN honor Range (default true). */
  honorRange?: boolean;
  maxRequests?: number;
  lifetimeMs?: number;
  /** A 401 echoes the Authorization header it got (to prove the client redacts server messages). */
  echoAuthOn401?: boolean;
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
export function gitOid(b: Buffer): string {
  return createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
}

const GITATTRIBUTES = Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n');

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

class HttpFail extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode?: string,
  ) {
    super(message);
  }
}

export class FakeHub {
  readonly repos = new Map<string, FakeRepo>();
  /** LFS storage: sha256 -> content. */
  readonly lfsStore = new Map<string, Buffer>();
  readonly requests: RequestRecord[] = [];
  /** Requests to the CDN that carried an Authorization header (must stay empty). */
  readonly cdnAuthLeaks: string[] = [];
  /** Everything any request sent us, to check the token never went anywhere odd. */
  readonly faults: Fault[] = [];
  private readonly parts = new Map<string, Map<number, Buffer>>();
  private readonly opts: Required<Omit<FakeHubOptions, 'multipartThreshold'>> & { multipartThreshold: number };
  private hub!: http.Server;
  private cdn!: http.Server;
  endpoint = '';
  cdnOrigin = '';
  private counter = 0;
  private stopped = false;
  private lifetime: NodeJS.Timeout | undefined;
  private readonly stalled = new Set<http.ServerResponse>();

  private constructor(o: FakeHubOptions) {
    this.opts = {
      tokens: o.tokens ?? [],
      lfsThreshold: o.lfsThreshold ?? 10 * 1024 * 1024,
      multipartThreshold: o.multipartThreshold ?? Number.POSITIVE_INFINITY,
      multipartChunk: o.multipartChunk ?? 1024,
      treePageSize: o.treePageSize ?? 1000,
      honorRange: o.honorRange ?? true,
      maxRequests: o.maxRequests ?? 2000,
      lifetimeMs: o.lifetimeMs ?? 120_000,
      echoAuthOn401: o.echoAuthOn401 ?? false,
    };
  }

  static async start(o: FakeHubOptions = {}): Promise<FakeHub> {
    const f = new FakeHub(o);
    f.hub = http.createServer((req, res) => void f.handle('hub', req, res));
    f.cdn = http.createServer((req, res) => void f.handle('cdn', req, res));
    for (const s of [f.hub, f.cdn]) {
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
      s.unref();
    }
    f.endpoint = `http://127.0.0.1:${(f.hub.address() as AddressInfo).port}`;
    f.cdnOrigin = `http://127.0.0.1:${(f.cdn.address() as AddressInfo).port}`;
    f.lifetime = setTimeout(() => void f.stop(), f.opts.lifetimeMs);
    f.lifetime.unref();
    return f;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.lifetime) clearTimeout(this.lifetime);
    for (const r of this.stalled) r.destroy();
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }

  fault(f: Fault): void {
    this.faults.push({ times: 1, ...f });
  }

  clearLog(): void {
    this.requests.length = 0;
  }

  // -------------------------------------------------------------------------------------------
  // Repo state

  private key(type: RepoKind, id: string): string {
    return `${type}:${id}`;
  }

  repo(id: string, type: RepoKind = 'model'): FakeRepo | undefined {
    return this.repos.get(this.key(type, id));
  }

  private newSha(): string {
    return createHash('sha1').update(`commit ${++this.counter} ${randomBytes(8).toString('hex')}`).digest('hex');
  }

  private storeFile(content: Buffer, lfs: boolean): StoredFile {
    const f = { content, lfs, sha256: sha256(content), oid: gitOid(content) };
    if (lfs) this.lfsStore.set(f.sha256, content);
    return f;
  }

  /** A repo with one commit on main holding `files` (path -> content; `{content, lfs}` to choose the storage). */
  addRepo(id: string, files: Record<string, string | Buffer | { content: string | Buffer; lfs: boolean }>, o: { type?: RepoKind; private?: boolean } = {}): string {
    const type = o.type ?? 'model';
    const repo: FakeRepo = { id, type, private: o.private ?? false, refs: new Map(), commits: new Map() };
    this.repos.set(this.key(type, id), repo);
    return this.addCommit(id, files, { type, branch: 'main', message: 'initial' });
  }

  /** A new commit on `branch` (created from main when missing) adding/replacing `files`. */
  addCommit(id: string, files: Record<string, string | Buffer | { content: string | Buffer; lfs: boolean }>, o: { type?: RepoKind; branch?: string; message?: string } = {}): string {
    const repo = this.repo(id, o.type ?? 'model')!;
    const branch = o.branch ?? 'main';
    const parentSha = repo.refs.get(branch) ?? repo.refs.get('main');
    const parent = parentSha ? repo.commits.get(parentSha) : undefined;
    const map = new Map(parent?.files ?? []);
    for (const [p, v] of Object.entries(files)) {
      const spec = typeof v === 'string' || Buffer.isBuffer(v) ? { content: v, lfs: false } : v;
      const content = Buffer.isBuffer(spec.content) ? spec.content : Buffer.from(spec.content);
      map.set(p, this.storeFile(content, spec.lfs));
    }
    const sha = this.newSha();
    repo.commits.set(sha, { sha, parent: parentSha, message: o.message ?? 'update', files: map });
    repo.refs.set(branch, sha);
    return sha;
  }

  tag(id: string, tag: string, sha: string, type: RepoKind = 'model'): void {
    this.repo(id, type)!.refs.set(tag, sha);
  }

  /** The files at a revision: path -> content. */
  files(id: string, rev = 'main', type: RepoKind = 'model'): Map<string, StoredFile> {
    const repo = this.repo(id, type);
    if (!repo) return new Map();
    const sha = repo.refs.get(rev) ?? rev;
    return repo.commits.get(sha)?.files ?? new Map();
  }

  head(id: string, rev = 'main', type: RepoKind = 'model'): string | undefined {
    return this.repo(id, type)?.refs.get(rev);
  }

  // -------------------------------------------------------------------------------------------
  // Request handling

  private bearer(req: http.IncomingMessage): string | undefined {
    const a = req.headers.authorization;
    return a?.startsWith('Bearer ') ? a.slice(7) : undefined;
  }

  /** undefined = anonymous, true = valid, false = invalid token. */
  private authState(req: http.IncomingMessage): boolean | undefined {
    const t = this.bearer(req);
    if (t === undefined) return undefined;
    return this.opts.tokens.includes(t);
  }

  private takeFault(server: 'hub' | 'cdn', req: http.IncomingMessage, url: URL): Fault | undefined {
    for (const f of this.faults) {
      if ((f.times ?? 1) <= 0) continue;
      if (f.server && f.server !== server) continue;
      if (f.method && f.method !== req.method) continue;
      if (f.path && !f.path.test(decodeURIComponent(url.pathname))) continue;
      f.times = (f.times ?? 1) - 1;
      return f;
    }
    return undefined;
  }

  private async handle(server: 'hub' | 'cdn', req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const rec: RequestRecord = { server, method: req.method ?? 'GET', url: decodeURIComponent(url.pathname) + url.search, range: req.headers.range, hasAuth: req.headers.authorization !== undefined };
    this.requests.push(rec);
    if (server === 'cdn' && rec.hasAuth) this.cdnAuthLeaks.push(rec.url);
    if (this.requests.length > this.opts.maxRequests) {
      rec.status = 503;
      res.writeHead(503).end('fake hub: too many requests in this test');
      return;
    }
    try {
      const body = req.method === 'POST' || req.method === 'PUT' ? await readBody(req) : Buffer.alloc(0);
      const fault = this.takeFault(server, req, url);
      if (fault?.kind === 'status') {
        const status = fault.status ?? 500;
        rec.status = status;
        const msg = status === 401 && this.opts.echoAuthOn401 ? `Invalid credentials in Authorization header: ${req.headers.authorization ?? ''}` : `injected ${status}`;
        res.writeHead(status, { 'content-type': 'application/json', ...(fault.errorCode ? { 'x-error-code': fault.errorCode } : {}) }).end(JSON.stringify({ error: msg }));
        return;
      }
      if (fault?.kind === 'drop') {
        rec.status = -1;
        req.socket.destroy();
        return;
      }
      if (this.authState(req) === false) {
        rec.status = 401;
        const msg = this.opts.echoAuthOn401 ? `Invalid credentials in Authorization header: ${req.headers.authorization ?? ''}` : 'Invalid credentials in Authorization header';
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: msg }));
        return;
      }
      const out = server === 'hub' ? await this.routeHub(req, url, body) : this.routeCdn(req, url, body);
      if (fault?.kind === 'drop-after') {
        rec.status = -2;
        req.socket.destroy();
        return;
      }
      this.respond(req, res, out, fault, rec);
    } catch (e) {
      const status = e instanceof HttpFail ? e.status : 500;
      rec.status = status;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (e instanceof HttpFail && e.errorCode) headers['x-error-code'] = e.errorCode;
      if (!res.headersSent) res.writeHead(status, headers).end(JSON.stringify({ error: (e as Error).message }));
    }
  }

  private respond(req: http.IncomingMessage, res: http.ServerResponse, out: Out, fault: Fault | undefined, rec: RequestRecord): void {
    let body = out.body ?? Buffer.alloc(0);
    const headers = { ...(out.headers ?? {}) };
    let status = out.status;
    if (out.rangeable && this.opts.honorRange && req.headers.range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range);
      if (m) {
        const start = Number(m[1]);
        const end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
        if (start >= body.length) {
          rec.status = 416;
          res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
          return;
        }
        headers['content-range'] = `bytes ${start}-${end}/${body.length}`;
        body = body.subarray(start, end + 1);
        status = 206;
      }
    }
    if (fault?.kind === 'corrupt') {
      body = Buffer.from(body);
      const i = Math.floor(body.length / 2);
      if (body.length > 0) body[i] = body[i]! ^ 0xff;
    }
    headers['content-length'] = String(body.length);
    rec.status = status;
    if (req.method === 'HEAD') {
      res.writeHead(status, headers).end();
      return;
    }
    if (fault?.kind === 'drop-mid-body' || fault?.kind === 'stall') {
      const n = Math.min(fault.afterBytes ?? Math.floor(body.length / 2), body.length - 1);
      res.writeHead(status, headers);
      res.write(body.subarray(0, Math.max(0, n)), () => {
        if (fault.kind === 'drop-mid-body') setTimeout(() => req.socket.destroy(), 10);
        else this.stalled.add(res);
      });
      return;
    }
    res.writeHead(status, headers).end(body);
  }

  private json(status: number, value: unknown, headers: Record<string, string> = {}): Out {
    return { status, body: Buffer.from(JSON.stringify(value)), headers: { 'content-type': 'application/json', ...headers } };
  }

  private needRepo(type: RepoKind, id: string, req: http.IncomingMessage, write = false): FakeRepo {
    const repo = this.repo(id, type);
    const auth = this.authState(req);
    if (write && auth !== true) throw new HttpFail(401, 'write access requires a token');
    if (!repo || (repo.private && auth !== true)) {
      if (auth === undefined && repo?.private) throw new HttpFail(401, 'Repository Not Found', 'RepoNotFound');
      throw new HttpFail(404, 'Repository Not Found', 'RepoNotFound');
    }
    return repo;
  }

  private commitAt(repo: FakeRepo, rev: string): Commit {
    const sha = repo.refs.get(rev) ?? (repo.commits.has(rev) ? rev : undefined);
    if (!sha) throw new HttpFail(404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    return repo.commits.get(sha)!;
  }

  private async routeHub(req: http.IncomingMessage, url: URL, body: Buffer): Promise<Out> {
    const seg = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const method = req.method ?? 'GET';

    if (method === 'GET' && url.pathname === '/api/whoami-v2') {
      if (this.authState(req) !== true) throw new HttpFail(401, 'Invalid credentials');
      return this.json(200, { name: 'tester', type: 'user' });
    }
    if (method === 'POST' && url.pathname === '/api/repos/create') {
      if (this.authState(req) !== true) throw new HttpFail(401, 'Invalid credentials');
      const b = JSON.parse(body.toString()) as { name: string; organization?: string; private?: boolean; type?: RepoKind };
      const id = b.organization ? `${b.organization}/${b.name}` : b.name;
      const type = b.type ?? 'model';
      if (this.repo(id, type)) throw new HttpFail(409, 'You already created this model repo');
      const repo: FakeRepo = { id, type, private: b.private === true, refs: new Map(), commits: new Map() };
      this.repos.set(this.key(type, id), repo);
      this.addCommit(id, { '.gitattributes': GITATTRIBUTES }, { type, message: 'initial commit' });
      return this.json(200, { url: `${this.endpoint}/${id}`, name: id });
    }
    if (method === 'POST' && /^\/lfs-(complete|verify)\//.test(url.pathname)) {
      return this.lfsFinish(seg[0] === 'lfs-complete' ? 'complete' : 'verify', seg[1]!, body, req);
    }

    // /api/{models|datasets}/{owner}/{name}/{action}/{rev}[/path]
    if (seg[0] === 'api' && (seg[1] === 'models' || seg[1] === 'datasets')) {
      const type: RepoKind = seg[1] === 'models' ? 'model' : 'dataset';
      const actions = ['revision', 'tree', 'preupload', 'commit', 'branch'];
      const ai = actions.includes(seg[3]!) ? 3 : 4;
      const id = seg.slice(2, ai).join('/');
      const action = seg[ai];
      const rev = seg[ai + 1] ?? '';
      const rest = seg.slice(ai + 2).join('/');
      if (method === 'GET' && action === 'revision') {
        const repo = this.needRepo(type, id, req);
        const c = this.commitAt(repo, rev);
        return this.json(200, { id, sha: c.sha, private: repo.private, siblings: [...c.files.keys()].map((rfilename) => ({ rfilename })) });
      }
      if (method === 'GET' && action === 'tree') return this.tree(type, id, rev, rest, url, req);
      if (method === 'POST' && action === 'preupload') {
        const repo = this.needRepo(type, id, req, true);
        this.commitAt(repo, rev);
        const b = JSON.parse(body.toString()) as { files: { path: string; sample: string; size: number }[] };
        return this.json(200, {
          files: b.files.map((f) => {
            const sample = Buffer.from(f.sample, 'base64');
            return { path: f.path, uploadMode: f.size >= this.opts.lfsThreshold || sample.includes(0) ? 'lfs' : 'regular', shouldIgnore: false };
          }),
        });
      }
      if (method === 'POST' && action === 'commit') return this.commit(type, id, rev, body, req);
      if (method === 'POST' && action === 'branch') {
        const repo = this.needRepo(type, id, req, true);
        if (repo.refs.has(rev)) throw new HttpFail(409, 'Reference already exists');
        repo.refs.set(rev, repo.refs.get('main')!);
        return this.json(200, {});
      }
      throw new HttpFail(404, `no route ${method} ${url.pathname}`);
    }

    // /{datasets/}?{owner}/{name}.git/info/lfs/objects/batch
    const gitIdx = seg.findIndex((s) => s.endsWith('.git'));
    if (method === 'POST' && gitIdx > 0 && seg.slice(gitIdx + 1).join('/') === 'info/lfs/objects/batch') {
      const isDataset = seg[0] === 'datasets';
      const idParts = seg.slice(isDataset ? 1 : 0, gitIdx + 1);
      idParts[idParts.length - 1] = idParts[idParts.length - 1]!.slice(0, -4);
      return this.lfsBatch(isDataset ? 'dataset' : 'model', idParts.join('/'), body, req);
    }

    // /{datasets/}?{owner}/{name}/resolve/{rev}/{path...}
    const ri = seg.indexOf('resolve');
    if ((method === 'GET' || method === 'HEAD') && ri > 0) {
      const isDataset = seg[0] === 'datasets';
      const id = seg.slice(isDataset ? 1 : 0, ri).join('/');
      const rev = seg[ri + 1]!;
      const file = seg.slice(ri + 2).join('/');
      const repo = this.needRepo(isDataset ? 'dataset' : 'model', id, req);
      const c = this.commitAt(repo, rev);
      const f = c.files.get(file);
      if (!f) throw new HttpFail(404, `Entry not found: ${file}`, 'EntryNotFound');
      if (f.lfs) {
        return {
          status: 302,
          headers: {
            location: `${this.cdnOrigin}/blobs/${f.sha256}`,
            'x-repo-commit': c.sha,
            'x-linked-etag': `"${f.sha256}"`,
            'x-linked-size': String(f.content.length),
            etag: `"${f.oid}"`,
          },
        };
      }
      return { status: 200, body: f.content, rangeable: true, headers: { etag: `"${f.oid}"`, 'x-repo-commit': c.sha, 'accept-ranges': 'bytes' } };
    }
    throw new HttpFail(404, `no route ${method} ${url.pathname}`);
  }

  private tree(type: RepoKind, id: string, rev: string, prefix: string, url: URL, req: http.IncomingMessage): Out {
    const repo = this.needRepo(type, id, req);
    const c = this.commitAt(repo, rev);
    const recursive = url.searchParams.get('recursive') === 'true';
    const dirs = new Set<string>();
    const items: Record<string, unknown>[] = [];
    for (const [p, f] of [...c.files.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (prefix && !p.startsWith(prefix + '/')) continue;
      const rel = prefix ? p.slice(prefix.length + 1) : p;
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = (prefix ? prefix + '/' : '') + parts.slice(0, i).join('/');
        if ((recursive || i === 1) && !dirs.has(d)) {
          dirs.add(d);
          items.push({ type: 'directory', oid: createHash('sha1').update(d).digest('hex'), size: 0, path: d });
        }
      }
      if (!recursive && parts.length > 1) continue;
      items.push({
        type: 'file',
        oid: f.oid,
        size: f.content.length,
        path: p,
        ...(f.lfs ? { lfs: { oid: f.sha256, size: f.content.length, pointerSize: 134 } } : {}),
      });
    }
    const cursor = Number(url.searchParams.get('cursor') ?? '0');
    const page = items.slice(cursor, cursor + this.opts.treePageSize);
    const headers: Record<string, string> = {};
    if (cursor + this.opts.treePageSize < items.length) {
      const next = new URL(`${this.endpoint}${url.pathname}`);
      next.searchParams.set('recursive', String(recursive));
      next.searchParams.set('cursor', String(cursor + this.opts.treePageSize));
      headers.link = `<${next.toString()}>; rel="next"`;
    }
    return this.json(200, page, headers);
  }

  private lfsBatch(type: RepoKind, id: string, body: Buffer, req: http.IncomingMessage): Out {
    this.needRepo(type, id, req, true);
    const b = JSON.parse(body.toString()) as { operation: string; objects: { oid: string; size: number }[]; transfers?: string[] };
    if (b.operation !== 'upload') throw new HttpFail(400, 'only uploads');
    const objects = b.objects.map((o) => {
      if (this.lfsStore.has(o.oid) && this.lfsStore.get(o.oid)!.length === o.size) return { oid: o.oid, size: o.size };
      const verify = { href: `${this.endpoint}/lfs-verify/${o.oid}`, header: {} };
      if (o.size > this.opts.multipartThreshold && b.transfers?.includes('multipart')) {
        const n = Math.ceil(o.size / this.opts.multipartChunk);
        const header: Record<string, string> = { chunk_size: String(this.opts.multipartChunk) };
        for (let i = 1; i <= n; i++) header[String(i).padStart(5, '0')] = `${this.cdnOrigin}/upload/${o.oid}/part/${i}`;
        return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${this.endpoint}/lfs-complete/${o.oid}`, header }, verify } };
      }
      return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${this.cdnOrigin}/upload/${o.oid}`, header: {} }, verify } };
    });
    return { status: 200, body: Buffer.from(JSON.stringify({ transfer: 'basic', objects })), headers: { 'content-type': 'application/vnd.git-lfs+json' } };
  }

  private staged = new Map<string, Buffer>();

  private routeCdn(req: http.IncomingMessage, url: URL, body: Buffer): Out {
    const seg = url.pathname.split('/').slice(1);
    if ((req.method === 'GET' || req.method === 'HEAD') && seg[0] === 'blobs') {
      const content = this.lfsStore.get(seg[1]!);
      if (!content) throw new HttpFail(404, 'NoSuchKey');
      return { status: 200, body: content, rangeable: true, headers: { etag: `"${seg[1]}"`, 'accept-ranges': 'bytes' } };
    }
    if (req.method === 'PUT' && seg[0] === 'upload' && seg.length === 2) {
      if (req.headers['content-length'] !== String(body.length)) throw new HttpFail(400, 'content-length mismatch');
      this.staged.set(seg[1]!, body);
      return { status: 200, headers: { etag: `"${createHash('md5').update(body).digest('hex')}"` } };
    }
    if (req.method === 'PUT' && seg[0] === 'upload' && seg[2] === 'part') {
      const parts = this.parts.get(seg[1]!) ?? new Map<number, Buffer>();
      this.parts.set(seg[1]!, parts);
      parts.set(Number(seg[3]), body);
      return { status: 200, headers: { etag: `"part-${seg[3]}-${createHash('md5').update(body).digest('hex')}"` } };
    }
    throw new HttpFail(404, `no route ${req.method} ${url.pathname}`);
  }

  private lfsFinish(what: 'complete' | 'verify', oid: string, body: Buffer, req: http.IncomingMessage): Out {
    if (what === 'complete') {
      const b = JSON.parse(body.toString()) as { oid: string; parts: { partNumber: number; etag: string }[] };
      const parts = this.parts.get(oid);
      if (!parts || b.oid !== oid) throw new HttpFail(400, 'no such multipart upload');
      const ordered = b.parts.sort((x, y) => x.partNumber - y.partNumber).map((p) => {
        const buf = parts.get(p.partNumber);
        if (!buf || p.etag !== `"part-${p.partNumber}-${createHash('md5').update(buf).digest('hex')}"`) throw new HttpFail(400, `bad part ${p.partNumber}`);
        return buf;
      });
      this.staged.set(oid, Buffer.concat(ordered));
      this.parts.delete(oid);
      return this.json(200, {});
    }
    if (this.authState(req) !== true) throw new HttpFail(401, 'verify needs a token');
    const b = JSON.parse(body.toString()) as { oid: string; size: number };
    const staged = this.staged.get(oid);
    if (!staged || sha256(staged) !== oid || staged.length !== b.size) throw new HttpFail(422, `object ${oid} was not uploaded correctly`);
    this.lfsStore.set(oid, staged);
    this.staged.delete(oid);
    return this.json(200, {});
  }

  private commit(type: RepoKind, id: string, rev: string, body: Buffer, req: http.IncomingMessage): Out {
    const repo = this.needRepo(type, id, req, true);
    const head = this.commitAt(repo, rev);
    const lines = body
      .toString()
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
    const hdr = lines[0];
    if (hdr?.key !== 'header') throw new HttpFail(400, 'first line must be the header');
    const parentCommit = hdr.value.parentCommit;
    if (typeof parentCommit === 'string' && parentCommit !== head.sha) throw new HttpFail(412, 'parentCommit is not the head of the branch');
    // Validate everything first; apply only if all is well (the Hub's commits are atomic).
    const files = new Map(head.files);
    for (const { key, value } of lines.slice(1)) {
      const p = value.path;
      if (typeof p !== 'string') throw new HttpFail(400, 'operation without a path');
      if (key === 'file') {
        if (value.encoding !== 'base64' || typeof value.content !== 'string') throw new HttpFail(400, 'bad file operation');
        files.set(p, this.storeFile(Buffer.from(value.content, 'base64'), false));
      } else if (key === 'lfsFile') {
        const content = this.lfsStore.get(String(value.oid));
        if (!content || (value.size !== undefined && value.size !== content.length)) throw new HttpFail(422, `LFS object ${String(value.oid)} for ${p} was never uploaded`);
        files.set(p, this.storeFile(content, true));
      } else if (key === 'deletedFile') {
        files.delete(p);
      } else {
        throw new HttpFail(400, `unknown operation ${key}`);
      }
    }
    const sha = this.newSha();
    repo.commits.set(sha, { sha, parent: head.sha, message: String(hdr.value.summary ?? ''), files });
    repo.refs.set(rev, sha);
    return this.json(200, { success: true, commitOid: sha, commitUrl: `${this.endpoint}/${id}/commit/${sha}` });
  }
}

interface Out {
  status: number;
  body?: Buffer;
  headers?: Record<string, string>;
  /** Honors Range requests. */
  rangeable?: boolean;
}
