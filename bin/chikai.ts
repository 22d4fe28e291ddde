#!/usr/bin/env node
// chikai's command line: one entry point for the demo, the node proxy, the xDS server and
// inspection. Each subcommand parses its flags, loads the cluster file and hands over.
import { parseArgs } from 'node:util';
import { ConfigError, DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { ClusterModel } from '../cluster/model.js';
import { createPolicy, POLICY_NAMES, UnknownPolicyError } from '../proxy/policy/index.js';
import { NodeProxy } from '../proxy/server.js';
import { StreamingGarbageCollector } from '../proxy/memory.js';
import { parseQueueSettings } from '../proxy/queueing.js';

const USAGE = `usage: chikai <command> [flags]

commands:
  demo      [--cluster FILE] [--policy NAME]
            emulated cluster on this machine: pods, one proxy per node, the xDS server
  proxy     --node NAME [--cluster FILE] [--listen HOST:PORT] [--admin HOST:PORT] [--policy NAME]
            the node proxy (activator replacement) for one node
  inspect   --node NAME [--admin HOST:PORT]
            what the xDS server tells that node's gateway (clusters, weights, priorities)

The cluster file defaults to the embedded demo cluster (${DEMO_CLUSTER_FILE}).
Policies: ${POLICY_NAMES.join(', ')}.`;

function hostPort(flag: string, v: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m) throw new UsageError(`--${flag} expects HOST:PORT, got ${JSON.stringify(v)}`);
  return { host: m[1], port: Number(m[2]) };
}

class UsageError extends Error {}

async function proxyCommand(args: string[]): Promise<void> {
  new StreamingGarbageCollector().start();
  const { values } = parseArgs({
    args,
    options: {
      node: { type: 'string' },
      cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
      listen: { type: 'string' },
      admin: { type: 'string' },
      policy: { type: 'string' },
      'drain-seconds': { type: 'string' },
    },
  });
  if (!values.node) throw new UsageError('proxy needs --node NAME (the Kubernetes node it runs on)');
  const file = loadClusterFile(values.cluster);
  const model = new ClusterModel(file.state);
  const node = model.current.node(values.node);
  if (!node) throw new UsageError(`--node ${values.node}: no such node in ${file.file} (nodes: ${file.state.nodes.map((n) => n.name).join(', ')})`);
  const drainSeconds = values['drain-seconds'] !== undefined ? Number(values['drain-seconds']) : file.proxy.drainSeconds;
  if (!Number.isFinite(drainSeconds) || drainSeconds < 0) throw new UsageError('--drain-seconds expects a number of seconds ≥ 0');
  const proxy = new NodeProxy({
    model,
    node: node.name,
    listen: values.listen ? hostPort('listen', values.listen) : { host: node.address, port: file.proxy.port },
    admin: values.admin ? hostPort('admin', values.admin) : { host: node.address, port: file.proxy.adminPort },
    policy: createPolicy(values.policy ?? file.proxy.policy),
    queue: parseQueueSettings(file.queue, file.file),
    drainSeconds,
    maxBodyBytes: file.proxy.maxBodyBytes,
    localAddress: node.address,
    peerPort: file.proxy.port,
    processMetrics: true,
  });
  await proxy.start();
  const a = proxy.address;
  const adm = proxy.adminAddress;
  console.log(`chikai proxy for ${node.name} listening on ${a.address}:${a.port}${adm ? `, admin on ${adm.address}:${adm.port}` : ''}`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: draining (${drainSeconds} s), readiness now fails`);
    proxy.drain().then(() => {
      console.log('drained, bye');
      process.exit(0);
    }, (err: unknown) => {
      console.error('drain failed:', err);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'proxy':
      return proxyCommand(rest);
    case 'demo': {
      const { demoCommand } = await import('./demo.js');
      return demoCommand(rest);
    }
    case 'inspect': {
      const { inspectCommand } = await import('../xds/inspect.js');
      return inspectCommand(rest);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(`chikai: bad cluster file: ${err.message}`);
    process.exit(2);
  }
  if (err instanceof UsageError || err instanceof UnknownPolicyError || (err as Error).name === 'InspectError' || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`chikai: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  console.error('chikai:', err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
