// The Dockerfile, without a Docker engine: its structure (stages, non-root user, exec-form
// entry point, health check), that the build context holds everything the entry point
// needs (every module it can import, every data file, every package as a production
// dependency), and that the command it names starts here.
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { builtinModules } from 'node:module';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Instruction { readonly op: string; readonly args: string }
interface Stage { readonly base: string; readonly name: string | undefined; readonly body: Instruction[] }

/** Instructions with line continuations joined, comments dropped, global ARG defaults substituted into FROM. */
function parseDockerfile(text: string): { stages: Stage[]; args: Record<string, string> } {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && pending === '') continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) { pending += line.slice(0, -1) + ' '; continue; }
    lines.push(pending + line);
    pending = '';
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const l of lines.map((x) => x.trim()).filter(Boolean)) {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (!m) continue;
    const op = m[1].toUpperCase();
    const rest = m[2];
    if (op === 'ARG' && stages.length === 0) {
      const [k, v = ''] = rest.split('=');
      args[k.trim()] = v.trim();
    } else if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest.replace(/--platform=\S+\s+/, ''))!;
      const base = f[1].replace(/\$\{?(\w+)\}?/g, (_, k: string) => args[k] ?? '');
      stages.push({ base, name: f[2], body: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1].body.push({ op, args: rest });
    }
  }
  return { stages, args };
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const { stages } = parseDockerfile(dockerfile);
const final = stages[stages.length - 1];
const ops = (s: Stage, op: string) => s.body.filter((i) => i.op === op);
const execForm = (s: string) => JSON.parse(s) as string[];
const copies = (s: Stage) => ops(s, 'COPY').map((i) => {
  const from = /--from=(\S+)/.exec(i.args)?.[1];
  const parts = i.args.replace(/--\S+=\S+\s*/g, '').trim().split(/\s+/);
  return { from, sources: parts.slice(0, -1), dest: parts[parts.length - 1] };
});

t.test('stages: build with dev dependencies, production dependencies only at runtime', async (t) => {
  t.ok(stages.length >= 2, `multi-stage (${stages.length} stages)`);
  t.ok(stages.slice(0, -1).every((s) => s.name), 'every stage but the last is named');
  for (const s of stages) t.match(s.base, /^node:(2[2-9]|[3-9]\d)(\.\d+)*-(bookworm|trixie|bullseye)-slim$|^node:(2[2-9]|[3-9]\d)/, `${s.name ?? 'runtime'}: a Node.js LTS image (${s.base})`);
  const build = stages.find((s) => ops(s, 'RUN').some((r) => /\btsc\b/.test(r.args)));
  t.ok(build, 'a stage compiles TypeScript');
  t.ok(ops(build!, 'RUN').some((r) => /npm ci(?!.*--omit=dev)/.test(r.args)), 'with the dev dependencies (npm ci)');

  // The runtime's node_modules come from `npm ci --omit=dev`, here or in a stage it copies from.
  const prodStage = [final, ...stages].find((s) => ops(s, 'RUN').some((r) => /npm ci\b.*--omit=dev/.test(r.args)));
  t.ok(prodStage, 'npm ci --omit=dev');
  if (prodStage !== final) {
    t.ok(copies(final).some((c) => c.from === prodStage!.name && c.sources.some((s) => s.endsWith('node_modules'))), `runtime copies node_modules from ${prodStage!.name}`);
  }
  t.ok(copies(final).some((c) => c.from === build!.name && c.sources.some((s) => s.endsWith('/dist'))), 'runtime copies the compiled dist/');
  t.notOk(ops(final, 'RUN').some((r) => /npm (ci|install)(?!.*--omit=dev)/.test(r.args)), 'no dev dependencies in the runtime stage');
});

t.test('runtime: non-root user, exec-form entry point, health check', async (t) => {
  const user = ops(final, 'USER').pop()?.args;
  t.ok(user, 'USER is set');
  const [uid] = (user ?? 'root').split(':');
  t.ok(/^\d+$/.test(uid) ? Number(uid) > 0 : uid !== 'root', `USER ${user} is not root`);
  t.ok(/^\d+$/.test(uid), 'numeric uid, so runAsNonRoot can verify it');
  const entry = execForm(ops(final, 'ENTRYPOINT').pop()!.args);
  t.same(entry, ['node', 'dist/bin/chikai.js'], 'ENTRYPOINT in exec form (signals reach node)');
  t.equal(ops(final, 'WORKDIR').pop()?.args, '/app');
  const hc = ops(final, 'HEALTHCHECK').pop()?.args ?? '';
  t.match(hc, /CMD \[/, 'HEALTHCHECK in exec form');
  const exposed = ops(final, 'EXPOSE').flatMap((e) => e.args.split(/\s+/));
  for (const p of ['8012', '9090', '18000']) t.ok(exposed.includes(p), `EXPOSE ${p}`);
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const p of ['node_modules', 'dist', '.git']) t.ok(ignore.includes(p), `.dockerignore keeps ${p} out of the context`);
});

t.test('the health check command works against an admin port', async (t) => {
  const hc = ops(final, 'HEALTHCHECK').pop()!.args;
  const cmd = execForm(hc.slice(hc.indexOf('CMD') + 3).trim());
  let status = 200;
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === '/healthz' ? status : 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const env = { ...process.env, CHIKAI_ADMIN_PORT: String((server.address() as AddressInfo).port) };
  await t.resolves(run(cmd[0] === 'node' ? process.execPath : cmd[0], cmd.slice(1), { env }), 'healthy: exit 0');
  status = 503;
  await t.rejects(run(process.execPath, cmd.slice(1), { env }), 'unhealthy: non-zero exit');
});

/** Every module the entry point can load: relative files, packages, and files read via import.meta.url. */
function closure(entry: string): { files: Set<string>; packages: Set<string>; dataFiles: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const dataFiles = new Set<string>();
  const builtins = new Set(builtinModules);
  const todo = [entry];
  while (todo.length) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const src = readFileSync(file, 'utf8');
    const specs = [
      ...src.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g),
      ...src.matchAll(/(?:^|[\s;])import\s*['"]([^'"]+)['"]/g),
      ...src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
    ].map((m) => m[1]);
    for (const s of specs) {
      if (s.startsWith('.')) todo.push(resolve(dirname(file), s));
      else if (!s.startsWith('node:') && !builtins.has(s)) packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]);
    }
    for (const m of src.matchAll(/new URL\(\s*['"]([^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g)) dataFiles.add(resolve(dirname(file), m[1]));
  }
  return { files, packages, dataFiles };
}

t.test('the image holds everything the entry point can load', async (t) => {
  const entryFile = join(ROOT, execForm(ops(final, 'ENTRYPOINT').pop()!.args)[1]);
  t.ok(existsSync(entryFile), 'the entry point is built (run tsc first)');
  const { files, packages, dataFiles } = closure(entryFile);
  t.ok(files.size > 10, `${files.size} modules reachable`);

  const build = stages.find((s) => ops(s, 'RUN').some((r) => /\btsc\b/.test(r.args)))!;
  const compiledDirs = new Set(copies(build).filter((c) => !c.from).flatMap((c) => c.sources));
  for (const f of files) {
    const top = relative(join(ROOT, 'dist'), f).split('/')[0];
    t.ok(compiledDirs.has(top), `${relative(ROOT, f)}: its source folder ${top}/ is copied into the build stage`);
  }

  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const p of packages) t.ok(pkg.dependencies?.[p], `package ${p} is a production dependency (the image runs npm ci --omit=dev)`);

  const runtimeCopies = copies(final).filter((c) => !c.from);
  for (const d of dataFiles) {
    const rel = relative(ROOT, d);
    const shipped = rel.startsWith('dist/') || rel.startsWith('node_modules/') || runtimeCopies.some((c) => c.sources.some((s) => rel === s || rel.startsWith(`${s}/`)));
    t.ok(shipped, `${rel} (read at run time) is in the image`);
  }

  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  // As Docker reads it: the last pattern that matches decides; `!pattern` puts a path back.
  const excluded = (s: string) => ignore.reduce((out, p) => {
    const back = p.startsWith('!');
    const q = back ? p.slice(1) : p;
    return s === q || s.startsWith(`${q}/`) ? !back : out;
  }, false);
  for (const s of stages.flatMap((st) => copies(st).filter((c) => !c.from).flatMap((c) => c.sources))) {
    t.ok(existsSync(join(ROOT, s)), `COPY ${s}: exists`);
    t.notOk(excluded(s), `COPY ${s}: not excluded by .dockerignore`);
    if (statSync(join(ROOT, s)).isDirectory()) t.pass(`${s}/ is a folder`);
  }
});

t.test('the command the image runs starts here', async (t) => {
  const entry = execForm(ops(final, 'ENTRYPOINT').pop()!.args);
  const cmd = execForm(ops(final, 'CMD').pop()?.args ?? '[]');
  const { stdout } = await run(process.execPath, [...entry.slice(1), ...cmd], { cwd: ROOT });
  t.match(stdout, /usage: chikai <command>/, `${[...entry, ...cmd].join(' ')} prints the usage and exits 0`);
  t.match(stdout, /\bproxy\b/);
  await t.rejects(run(process.execPath, [entry[1], 'no-such-command'], { cwd: ROOT }), { code: 2 }, 'a wrong command exits 2');
});
