// Bundles the parts of tfjs-core that its Node entry point leaves out: the gradient registrations
// (without them tf.grad fails with "gradient function not found") and the chained tensor methods
// (x.square(), x.sum() ...). tfjs-core ships them only as ES modules with extensionless imports,
// which Node cannot load directly, so esbuild bundles them once at build time into dist/vendor.
// Everything they register lands in tfjs's global registries, shared with the main tfjs-core module.
import { build } from 'esbuild';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'vendor', 'tfjs-extras.cjs');
mkdirSync(dirname(outfile), { recursive: true });
await build({
  stdin: {
    contents: [
      "import '@tensorflow/tfjs-core/dist/register_all_gradients';",
      "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';",
    ].join('\n'),
    resolveDir: root,
    loader: 'js',
  },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outfile,
  logLevel: 'warning',
  legalComments: 'none',
});
