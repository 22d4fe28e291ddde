// chikai's xDS server under test, alone in its own process so its CPU time and memory are
// its own, serving the bench model on a free loopback port. Driven over IPC by the bench.
import { configuredLoadView } from '../../cluster/load.js';
import { startXdsServer, type XdsServer } from '../../xds/server.js';
import { benchModel, readyAfter, type BenchModel } from './model.js';
import type { ServerCommand, ServerReply } from './protocol.js';

let server: XdsServer | undefined;
let bench: BenchModel | undefined;

function reply(r: ServerReply): void {
  process.send!(r);
}

process.on('message', (cmd: ServerCommand) => {
  const run = async () => {
    if (cmd.kind === 'start') {
      bench = benchModel(cmd.revisions);
      const m = bench.model;
      server = await startXdsServer({ model: m, load: configuredLoadView(() => m.current), listen: { host: '127.0.0.1', port: 0 }, proxyPort: 8012, log: () => undefined });
      reply({ kind: 'started', port: server.address.port });
    } else {
      bench!.model.setReady(bench!.changedPod, readyAfter(cmd.seq));
      reply({ kind: 'changed' });
    }
  };
  run().catch((err: Error) => reply({ kind: 'error', error: err.stack ?? String(err) }));
});
process.on('disconnect', () => {
  void server?.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
