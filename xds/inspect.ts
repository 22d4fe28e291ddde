// `chikai inspect --node NAME`: what the xDS server tells that node's gateway, read from the
// xDS admin port the way one reads Envoy's own admin `/clusters`.
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { UsageError } from '../bin/usage-error.js';

export class InspectError extends UsageError {
  override name = 'InspectError';
}

export async function inspectCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string' },
      admin: { type: 'string' },
      cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
      format: { type: 'string', default: 'text' },
      what: { type: 'string', default: 'clusters' },
    },
  });
  if (!values.node) throw new InspectError('inspect needs --node NAME (the gateway node whose view to show)');
  const what = values.what;
  if (!['clusters', 'config_dump', 'clients'].includes(what)) {
    throw new InspectError(`--what expects clusters, config_dump or clients, got ${JSON.stringify(what)}`);
  }
  let admin = values.admin;
  if (!admin) {
    const file = loadClusterFile(values.cluster);
    admin = `${file.xds.admin.host}:${file.xds.admin.port}`;
  }
  const query = new URLSearchParams({ node: values.node });
  if (values.format === 'json') query.set('format', 'json');
  const url = `http://${admin}/${what}?${query}`;
  let res;
  try {
    res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  } catch (err) {
    throw new InspectError(`cannot reach the xDS admin server at ${admin} (${(err as Error).message}); is \`npm start\` (or \`chikai xds\`) running? Pass --admin HOST:PORT to point elsewhere`);
  }
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new InspectError(`${url} answered ${res.statusCode}: ${body.trim()}`);
  process.stdout.write(body.endsWith('\n') ? body : `${body}\n`);
}
