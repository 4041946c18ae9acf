// ACGAN: pick a class, draw a grid of its images; new noise on a click. Where the export
// carries its generator at other precisions, each draws the same noise side by side.
import { control, element, tensor } from "../app.js";

const BITS = { none: "32 bits", fp16: "16 bits", int8: "8 bits" };

export const HELP = "Pick a class: the generator draws a grid of that class from random noise, " +
  "at each precision the export carries, side by side (the same noise for each). new noise " +
  "draws again; grid: images a side (1 to 10).";

export async function start({ manifest, sessions, run, root, controls }) {
  // the generator's file at each precision the export carries: {none: "generator.onnx", ...}
  const files = (manifest.web && manifest.web.precisions) || { [manifest.precision]: "generator.onnx" };
  const LABELS = Object.fromEntries(Object.entries(BITS).filter(([p]) => p in files)
    .map(([p, label]) => [files[p].replace(/\.onnx$/, ""), label]));
  const names = Object.keys(LABELS);
  const latent = manifest.latent_size;
  const select = control(controls, "<label>class <select id='class'></select></label>");
  manifest.classes.forEach((name, i) => select.add(new Option(name, i)));
  const size = control(controls, "<label>grid <input id='grid-size' type='number' min='1' " +
    "max='10' value='4'></label>");
  const fresh = control(controls, "<button id='noise'>new noise</button>");
  const canvases = {};
  for (const name of names) {
    const panel = element(root, "div", { className: "panel" });
    element(panel, "span", { textContent: `${LABELS[name]} weights` });
    canvases[name] = element(panel, "canvas", { id: `grid-${name}`, width: 280, height: 280 });
  }
  let noise = [];

  // images [n, 1, 28, 28] in [-1, 1] for noise z (flat, n x latent) and one class
  async function images(name, z, classIndex) {
    const n = z.length / latent, session = sessions[name];
    const out = await run(session, { z: new ort.Tensor("float32", Float32Array.from(z), [n, latent]),
      classes: tensor("int64", new Array(n).fill(classIndex), [n]) });
    return out[session.outputNames[0]].data;
  }

  async function draw() {
    const side = Number(size.value), n = side * side;
    if (noise.length !== n * latent) { // uniform in [-1, 1], as the generator trained on
      noise = Array.from({ length: n * latent }, () => 2 * Math.random() - 1);
    }
    for (const name of names) {
      const pixels = await images(name, noise, Number(select.value));
      const canvas = canvases[name], g = canvas.getContext("2d"), cell = canvas.width / side;
      const picture = new ImageData(28, 28);
      const scratch = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
      g.imageSmoothingEnabled = false;
      for (let k = 0; k < n; k++) {
        for (let p = 0; p < 784; p++) {
          const grey = Math.round((pixels[k * 784 + p] + 1) * 127.5);
          picture.data.set([grey, grey, grey, 255], p * 4);
        }
        scratch.getContext("2d").putImageData(picture, 0, 0);
        g.drawImage(scratch, (k % side) * cell, Math.floor(k / side) * cell, cell, cell);
      }
    }
  }

  fresh.onclick = () => { noise = []; draw(); };
  select.onchange = draw;
  size.onchange = draw;
  await draw();
  return { images, draw, precisions: names };
}
