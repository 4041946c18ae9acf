// The page's start: read the export's manifest, open its ONNX files in ONNX Runtime Web
// and hand them to the page of the experiment's kind. Everything a test or a bench needs
// is on window.rlgen: the manifest, `infer` (any network, any inputs), the JS envs, the
// running page's own methods, the time to the first inference and any error shown.
import { CartPole, Snake } from "./envs.js";

const rlgen = (window.rlgen = { envs: { CartPole, Snake }, error: null, page: null });
const status = document.getElementById("status");

export function showError(message) {
  rlgen.error = message;
  status.textContent = message;
  status.className = "error";
}

export function showStatus(message, state = "") {
  status.textContent = message;
  status.className = state;
}

// a labelled control in the page's control bar
export function control(parent, html) {
  const wrap = document.createElement("span");
  wrap.className = "control";
  wrap.innerHTML = html;
  parent.appendChild(wrap);
  return wrap.querySelector("input, select, button, textarea");
}

export function element(parent, tag, attributes = {}) {
  const made = Object.assign(document.createElement(tag), attributes);
  parent.appendChild(made);
  return made;
}

export function softmax(values, temperature = 1) {
  const scaled = Array.from(values, (v) => v / temperature);
  const top = Math.max(...scaled);
  const exps = scaled.map((v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

// a tensor from plain data: int64 inputs need BigInt64Array
export function tensor(type, data, dims) {
  const typed = type === "int64" ? BigInt64Array.from(data, (v) => BigInt(v))
    : type === "uint8" ? Uint8Array.from(data) : Float32Array.from(data);
  return new ort.Tensor(type, typed, dims);
}

const PAGES = {
  "generative.lstm_text": "text", "generative.vae": "vae", "generative.acgan": "acgan",
  "generative.classifier": "classifier",
};

// the generative kinds by trainer; an agent by the game it plays (rlgen's own envs only)
function pageFor(manifest) {
  if (manifest.trainer in PAGES) return PAGES[manifest.trainer];
  const target = (manifest.env && manifest.env._target_) || "";
  if (target.endsWith("SnakeEnv")) return "snake";
  if (target.endsWith("CartPoleEnv")) return "cartpole";
  return null;
}

async function fetchOk(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path} is missing on the server (HTTP ${response.status})`);
  return response;
}

async function start() {
  let manifest;
  try {
    manifest = await (await fetchOk("manifest.json")).json();
  } catch (err) {
    showError(`not an rlgen export: ${err.message}; write one with rlgen-export run=RUN_DIR web=true`);
    return;
  }
  rlgen.manifest = manifest;
  document.title = `rlgen: ${manifest.experiment}`;
  const bits = { none: 32, fp16: 16, int8: 8 }[manifest.precision];
  document.getElementById("title").textContent =
    `${manifest.experiment} (${manifest.checkpoint}, weights at ${bits} bits)`;
  const kind = pageFor(manifest);
  if (!kind) {
    const env = manifest.env ? ` on ${manifest.env.id || manifest.env._target_}` : "";
    showError(`no browser page for ${manifest.trainer}${env}: its export runs in Python ` +
      "(rlgen-eval run=EXPORT_DIR backend=onnx)");
    return;
  }
  // the page first: what it says about its controls, and which networks it leaves out
  const module = await import(`./pages/${kind}.js`);
  document.getElementById("help").textContent = module.HELP;
  // one thread: several need cross-origin isolation, which a plain static host lacks
  ort.env.wasm.numThreads = 1;
  const sessions = {};
  const load = async (file) => {
    const bytes = await (await fetchOk(file)).arrayBuffer();
    sessions[file.replace(/\.onnx$/, "")] = await ort.InferenceSession.create(bytes);
  };
  const unused = new Set(module.UNUSED || []); // never downloaded by the page itself
  const files = manifest.networks.map((n) => n.file)
    .concat((manifest.web && manifest.web.extra_files) || [])
    .filter((file) => !unused.has(file.replace(/\.onnx$/, "")));
  for (const [i, file] of files.entries()) {
    showStatus(`loading the models: ${file} (${i + 1} of ${files.length})...`, "loading");
    try {
      await load(file);
    } catch (err) {
      showError(`could not load ${file}: ${err.message || err}`);
      return;
    }
  }
  rlgen.sessions = sessions;
  // any network on given inputs (one the page leaves out is loaded now): {name: {type,
  // data, dims}} -> [{name, data, dims}] in the order of the network's outputs
  rlgen.infer = async (network, feeds) => {
    if (!(network in sessions)) await load(`${network}.onnx`);
    const inputs = {};
    for (const [name, f] of Object.entries(feeds)) inputs[name] = tensor(f.type, f.data, f.dims);
    const outputs = await sessions[network].run(inputs);
    return sessions[network].outputNames.map((name) =>
      ({ name, data: Array.from(outputs[name].data, Number), dims: outputs[name].dims }));
  };
  let firstRun = true;
  const timed = async (session, feeds) => { // records when the page first ran a model
    const outputs = await session.run(feeds);
    if (firstRun) {
      firstRun = false;
      rlgen.firstInferenceMs = performance.now();
    }
    return outputs;
  };
  try {
    rlgen.page = await module.start({ manifest, sessions, run: timed,
      root: document.getElementById("page"), controls: document.getElementById("controls") });
    rlgen.kind = kind;
    if (!rlgen.error) showStatus(`ready: ${files.length === 1 ? "the model" : `${files.length} models`} loaded`, "ready");
  } catch (err) {
    showError(`the ${kind} page failed: ${err.message || err}`);
  }
}

start();
