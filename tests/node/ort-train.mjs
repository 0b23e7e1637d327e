// Trains an onnx-adadelta step model with onnxruntime-node, using only the documented contract: the metadata
// 'onnx_adadelta.step_model' says which output feeds which input and where each state input's start value is.
// Usage: node ort-train.mjs STEP.onnx DATA.npz STEPS BATCH OUT.npz
//   DATA.npz: one array per data input, [rows, ...]; step k feeds the k-th batch of BATCH rows, in order, from the
//             start again after the last whole batch.
//   OUT.npz:  each parameter after the last step, and 'loss' (one value per step).
import * as ort from 'onnxruntime-node';
import { readModel } from './onnx-model.mjs';
import { readNpz, writeNpz } from './npz.mjs';

const [modelPath, dataPath, stepsText, batchText, outPath] = process.argv.slice(2), batch = Number(batchText);
const { metadata, initializers } = readModel(modelPath);
const contract = JSON.parse(metadata['onnx_adadelta.step_model']);
const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, logSeverityLevel: 3 });
for (const s of contract.state)
  if (!session.inputNames.includes(s.input)) throw new Error(`onnxruntime-node does not list state input '${s.input}', so it would drop its feed`);

// The state starts from the initializer the contract names (format 2), or the input's own (format 1).
let state = Object.fromEntries(contract.state.map(s => {
  const t = initializers[s.initial ?? s.input];
  return [s.input, new ort.Tensor(t.type, t.data, t.dims)];
}));
const data = readNpz(dataPath), losses = [];
for (let k = 0; k < Number(stepsText); k++) {
  const feeds = { ...state };
  for (const name of contract.data_inputs) {
    const { data: all, shape } = data[name], row = all.length / shape[0], b = k % Math.floor(shape[0] / batch);
    feeds[name] = new ort.Tensor(all instanceof Float32Array ? 'float32' : 'int64', all.slice(b * batch * row, (b + 1) * batch * row), [batch, ...shape.slice(1)]);
  }
  const out = await session.run(feeds);
  losses.push(out[contract.loss].data[0]);
  state = Object.fromEntries(contract.state.map(s => [s.input, out[s.output]])); // each output feeds its input next step
}
const result = { loss: { data: Float32Array.from(losses), shape: [losses.length] } };
for (const s of contract.state.filter(s => s.kind === 'Parameter')) result[s.input] = { data: state[s.input].data, shape: state[s.input].dims };
writeNpz(outPath, result);
console.log(`onnxruntime-node: ${losses.length} steps of ${batch} rows, loss ${losses[0]} -> ${losses.at(-1)}; wrote ${outPath}`);
