// N simulated node proxies in one process, reporting their (simulated) measurements: each
// serves `/load` as the proxies did for polling, or runs chikai's LoadReporter (LRS).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadReportOf } from '../../../cluster/load-report.js';
import { LoadReporter } from '../../../proxy/load-reporter.js';
import { INTERVAL_MS, type ProxiesCommand, type ProxiesReply } from './protocol.js';
import { simulatedLoads, simulatedModel } from './simulated.js';

const servers: Server[] = [];
const reporters: LoadReporter[] = [];

function reply(r: ProxiesReply): void {
  process.send!(r);
}

async function start(cmd: ProxiesCommand): Promise<void> {
  const model = simulatedModel(cmd.nodes);
  const loads = simulatedLoads(model);
  setInterval(() => {
    for (const l of loads.values()) l.step();
  }, INTERVAL_MS).unref();
  const ports: number[] = [];
  for (const [node, load] of loads) {
    if (cmd.mode === 'poll') {
      const server = createServer((req, res) => {
        const body = JSON.stringify(loadReportOf(node, load, model.current));
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      servers.push(server);
      ports.push((server.address() as AddressInfo).port);
    } else {
      const r = new LoadReporter({ node, model, load, servers: [{ host: '127.0.0.1', port: cmd.port! }], intervalMs: INTERVAL_MS });
      reporters.push(r);
      await r.start();
    }
  }
  reply({ kind: 'started', ports });
}

process.on('message', (cmd: ProxiesCommand) => {
  start(cmd).catch((err: Error) => reply({ kind: 'error', error: err.stack ?? String(err) }));
});
process.on('disconnect', () => {
  for (const r of reporters) r.close();
  for (const s of servers) s.close();
  setTimeout(() => process.exit(0), 200).unref();
});
