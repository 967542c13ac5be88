import { build } from 'esbuild'
const out = await build({ entryPoints: ['src/client/index.ts'], bundle: true, minify: true, format: 'esm', splitting: true, outdir: '/virtual', write: false })
process.stdout.write(out.outputFiles.find(f=>f.path.endsWith('index.js')).text)
