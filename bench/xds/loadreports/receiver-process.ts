// The xDS side of the load-report bench, alone in its process so its CPU time is its own:
// either the polling chikai did before (GET every proxy's /load every interval, parse the
// JSON, apply every value), or the LRS service it runs now. Both feed a ReportedLoad.
import { Server, ServerCredentials, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { ReportedLoad, type LoadReport, type PeerReport, type PodReport } from '../../../cluster/load-report.js';
import { configuredLoadView } from '../../../cluster/load.js';
import { LoadReportService } from '../../../xds/load-reports.js';
import { INTERVAL_MS, type ReceiverCommand, type ReceiverReply } from './protocol.js';
import { simulatedModel } from './simulated.js';

let counters = () => ({ reports: 0, bytes: 0, reporters: 0 });

function reply(r: ReceiverReply): void {
  process.send!(r);
}

/** The replaced mechanism: every interval, every proxy's whole report over HTTP. */
function poll(nodes: readonly string[], ports: readonly number[], load: ReportedLoad): void {
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: 2 });
  let reports = 0;
  let bytes = 0;
  const busy = new Set<number>();
  const one = async (i: number) => {
    if (busy.has(i)) return;
    busy.add(i);
    try {
      const res = await request(`http://127.0.0.1:${ports[i]}/load`, { dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
      const text = await res.body.text();
      // Status line and headers of the answer, the request line and headers: about 250 bytes.
      bytes += text.length + 250;
      const report = JSON.parse(text) as LoadReport;
      load.apply(nodes[i]!, { peers: new Map<string, PeerReport>(Object.entries(report.peers)), pods: new Map<string, PodReport>(Object.entries(report.pods)) });
      reports += 1;
    } catch {
      // counted as missing
    } finally {
      busy.delete(i);
    }
  };
  setInterval(() => {
    for (let i = 0; i < ports.length; i++) void one(i);
  }, INTERVAL_MS);
  counters = () => ({ reports, bytes, reporters: load.reporters().length });
}

async function start(cmd: Extract<ReceiverCommand, { kind: 'start' }>): Promise<number> {
  const model = simulatedModel(cmd.nodes);
  const nodes = model.current.nodes.map((n) => n.name);
  if (cmd.mode === 'poll') {
    poll(nodes, cmd.ports ?? [], new ReportedLoad(configuredLoadView(() => model.current)));
    return 0;
  }
  const service = new LoadReportService({ model, intervalMs: INTERVAL_MS });
  service.start();
  const server = new Server();
  const { definition, implementation } = service.service();
  server.addService(definition, implementation as UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  counters = () => ({ reports: service.reportsReceived, bytes: service.bytesReceived, reporters: service.reporters().length });
  return port;
}

process.on('message', (cmd: ReceiverCommand) => {
  if (cmd.kind === 'counters') return reply({ kind: 'counters', ...counters() });
  start(cmd).then((port) => reply({ kind: 'started', port }), (err: Error) => reply({ kind: 'error', error: err.stack ?? String(err) }));
});
process.on('disconnect', () => process.exit(0));
