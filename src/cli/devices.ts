import type { Argv } from 'yargs';
import { handler, formatTable } from './common.js';

export const command = 'devices';
export const describe = 'Which compute devices can run here, and why not';
export function builder(y: Argv) {
  return y.option('json', { type: 'boolean', default: false, describe: 'print JSON' });
}
const handle = handler(async (args: { json: boolean }) => {
  // Loaded here, not at the top: it starts tfjs, which the other commands' startup need not pay for.
  const { listDevices, nativeSummary } = await import('../runtime/devices.js');
  const devices = listDevices();
  if (args.json) {
    process.stdout.write(JSON.stringify(devices, null, 2) + '\n');
    return;
  }
  const rows = devices.map((d) => [d.name, d.availability.available ? 'yes' : 'no', d.availability.available ? d.description : `${d.description}; ${d.availability.reason}`]);
  process.stdout.write(formatTable(['device', 'available', 'notes'], rows) + '\n');
  const native = nativeSummary();
  if (native) process.stdout.write(`\n${native} (UNIME_GEMM=blas|builtin overrides; UNIME_NUM_THREADS sets threads)\n`);
});
export { handle as handler };
