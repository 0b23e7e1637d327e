// Runs TensorFlow.js's own Adadelta (tf.train.adadelta, pure-JS CPU backend) on seeded gradients and writes the
// trajectory that `onnx-adadelta verify STEP.onnx --against OUT.npz` reads: initial/<p>, grads/<p> [steps, ...],
// params/<p> [steps, ...] (the value after each step).
// Usage: node tfjs-adadelta.mjs OUT.npz --lr 1 --rho 0.95 --eps 1e-6 --steps 100 --seed 1 --param W:6x3 --param b:3
import * as tf from '@tensorflow/tfjs';
import { writeNpz } from './npz.mjs';

const args = process.argv.slice(2), out = args[0], flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : args[i + 1];
};
const params = args.flatMap((a, i) => (a === '--param' ? [args[i + 1]] : [])).map(spec => {
  const [name, dims] = spec.split(':');
  return { name, shape: dims.split('x').map(Number) };
});
const lr = Number(flag('lr', '0.001')), rho = Number(flag('rho', '0.95')), steps = Number(flag('steps', '100'));
const eps = flag('eps', null) === null ? null : Number(flag('eps'));
if (!out || params.length === 0) throw new Error('usage: node tfjs-adadelta.mjs OUT.npz [--lr --rho --eps --steps --seed] --param NAME:DxD...');

let seed = Number(flag('seed', '1')) >>> 0;
const random = () => { // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

await tf.setBackend('cpu');
const optimizer = tf.train.adadelta(lr, rho, eps ?? undefined);
const arrays = {};
for (const p of params) {
  p.size = p.shape.reduce((a, b) => a * b, 1);
  p.initial = Float32Array.from({ length: p.size }, () => 2 * random() - 1);
  p.variable = tf.variable(tf.tensor(p.initial, p.shape, 'float32'), true, p.name);
  p.grads = new Float32Array(steps * p.size);
  p.values = new Float32Array(steps * p.size);
  arrays[`initial/${p.name}`] = { data: p.initial, shape: p.shape };
}
for (let s = 0; s < steps; s++) {
  const scale = 10 ** (3 * random() - 2); // gradients from 0.01 to 10 in size
  const feeds = {};
  for (const p of params) {
    const g = Float32Array.from({ length: p.size }, () => scale * (2 * random() - 1));
    p.grads.set(g, s * p.size);
    feeds[p.name] = tf.tensor(g, p.shape, 'float32');
  }
  optimizer.applyGradients(feeds);
  for (const p of params) p.values.set(p.variable.dataSync(), s * p.size);
  tf.dispose(Object.values(feeds));
}
for (const p of params) {
  arrays[`grads/${p.name}`] = { data: p.grads, shape: [steps, ...p.shape] };
  arrays[`params/${p.name}`] = { data: p.values, shape: [steps, ...p.shape] };
}
writeNpz(out, arrays);
console.log(`tfjs ${tf.version.tfjs} backend ${tf.getBackend()}: ${steps} steps of tf.train.adadelta(${lr}, ${rho}, ${eps ?? 'default'}) on ${params.map(p => p.name).join(', ')} -> ${out}`);
