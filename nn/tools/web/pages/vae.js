// VAE: the decoder's images over a grid of the 2-D latent plane, as in the book; the
// mouse over the plane decodes the point under it, drawn large beside it.
import { control, element } from "../app.js";

export async function start({ manifest, sessions, run, root, controls }) {
  const decoder = sessions.decoder;
  if (manifest.latent_size !== 2) {
    throw new Error(`the latent plane needs a 2-D latent space; this model has ${manifest.latent_size}`);
  }
  const extent = control(controls, "<label>range &plusmn;<input id='range' type='number' " +
    "min='0.5' max='20' step='0.5' value='4'></label>");
  const count = control(controls, "<label>grid <input id='grid' type='number' min='2' " +
    "max='30' value='20'></label>");
  const plane = element(root, "canvas", { id: "plane", width: 560, height: 560 });
  const side = element(root, "div", { className: "panel" });
  const zoom = element(side, "canvas", { id: "zoom", width: 224, height: 224 });
  const readout = element(side, "div", { className: "readout", id: "readout" });

  async function decode(points) { // [[z1, z2], ...] -> one Float32Array of 784 per point
    const z = new ort.Tensor("float32", Float32Array.from(points.flat()), [points.length, 2]);
    const pixels = (await run(decoder, { z }))[decoder.outputNames[0]].data;
    return points.map((_, i) => pixels.subarray(i * 784, (i + 1) * 784));
  }

  function paint(canvas, pixels, x, y, size) {
    const small = new ImageData(28, 28);
    pixels.forEach((v, i) => {
      const grey = Math.round(v * 255);
      small.data.set([grey, grey, grey, 255], i * 4);
    });
    const scratch = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
    scratch.getContext("2d").putImageData(small, 0, 0);
    const g = canvas.getContext("2d");
    g.imageSmoothingEnabled = false;
    g.drawImage(scratch, x, y, size, size);
  }

  // the book's grid: z1 left to right, z2 bottom to top, over [-range, range]
  async function drawGrid() {
    const n = Number(count.value), r = Number(extent.value), cellSize = plane.width / n;
    const values = Array.from({ length: n }, (_, i) => -r + (2 * r * i) / (n - 1));
    const points = [];
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < n; col++) points.push([values[col], values[n - 1 - row]]);
    }
    const images = await decode(points);
    images.forEach((pixels, i) =>
      paint(plane, pixels, (i % n) * cellSize, Math.floor(i / n) * cellSize, cellSize));
  }

  async function showPoint(z1, z2) {
    const [pixels] = await decode([[z1, z2]]);
    paint(zoom, pixels, 0, 0, zoom.width);
    readout.textContent = `z = (${z1.toFixed(2)}, ${z2.toFixed(2)})`;
    return pixels;
  }

  plane.addEventListener("mousemove", (event) => {
    const r = Number(extent.value), box = plane.getBoundingClientRect();
    const z1 = -r + (2 * r * (event.clientX - box.left)) / box.width;
    const z2 = r - (2 * r * (event.clientY - box.top)) / box.height;
    showPoint(z1, z2);
  });
  extent.onchange = drawGrid;
  count.onchange = drawGrid;
  await drawGrid();
  await showPoint(0, 0);
  return { decode, showPoint, drawGrid };
}
