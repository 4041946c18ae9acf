// VAE: the decoder's images over a grid of the 2-D latent plane, as in the book; the
// mouse over the plane decodes the point under it, drawn large beside it.
import { control, element } from "../app.js";

export const HELP = "Each square is the decoder's image of one point of the 2-D latent plane " +
  "(z1 left to right, z2 bottom to top). Move the mouse over the plane to decode the point " +
  "under it, drawn large on the right. range: how far from 0 the plane reaches (0.5 to 20); " +
  "grid: images a side (2 to 30).";
export const UNUSED = ["encoder"]; // the page only decodes
const LIMITS = { range: [0.5, 20, 4], grid: [2, 30, 20] }; // low, high, default

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
  const message = element(root, "p", { className: "message", id: "message" });
  let pointer = [0.5, 0.5]; // where on the plane the zoom shows, as shares of its sides

  // a field's value within what the page can draw; a refused value is said and replaced
  function within(input, name) {
    const [low, high, fallback] = LIMITS[name], value = Number(input.value);
    const kept = Number.isFinite(value) && input.value !== ""
      ? Math.min(high, Math.max(low, name === "grid" ? Math.round(value) : value)) : fallback;
    if (String(kept) !== String(value)) {
      message.textContent = `${name} takes ${low} to ${high}: ${input.value || "nothing"} is ` +
        `outside, drawn at ${kept}`;
      input.value = kept;
    }
    return kept;
  }

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
    message.textContent = "";
    const n = within(count, "grid"), r = within(extent, "range"), cellSize = plane.width / n;
    const values = Array.from({ length: n }, (_, i) => -r + (2 * r * i) / (n - 1));
    const points = [];
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < n; col++) points.push([values[col], values[n - 1 - row]]);
    }
    const images = await decode(points);
    plane.getContext("2d").clearRect(0, 0, plane.width, plane.height);
    images.forEach((pixels, i) =>
      paint(plane, pixels, (i % n) * cellSize, Math.floor(i / n) * cellSize, cellSize));
    await showAt(...pointer); // the zoom and its z follow the plane's new range
  }

  // the point at shares (fx, fy) of the plane's width and height, decoded
  function showAt(fx, fy) {
    pointer = [fx, fy];
    const r = Number(extent.value);
    return showPoint(-r + 2 * r * fx, r - 2 * r * fy);
  }

  async function showPoint(z1, z2) {
    const [pixels] = await decode([[z1, z2]]);
    paint(zoom, pixels, 0, 0, zoom.width);
    readout.textContent = `z = (${z1.toFixed(2)}, ${z2.toFixed(2)})`;
    return pixels;
  }

  plane.addEventListener("mousemove", (event) => {
    const box = plane.getBoundingClientRect();
    showAt((event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height);
  });
  extent.onchange = drawGrid;
  count.onchange = drawGrid;
  await drawGrid();
  return { decode, showPoint, showAt, drawGrid };
}
