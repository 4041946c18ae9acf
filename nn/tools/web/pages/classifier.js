// Classifier: draw on the canvas with the mouse; the convnet's class probabilities as
// bars, as in the TensorFlow.js MNIST tutorial. The drawing is scaled to 28 x 28.
import { control, element, softmax } from "../app.js";

export const HELP = "Draw a digit with the mouse on the black square: the bars are the model's " +
  "probability of each class, updated when you lift the button. clear wipes the square.";
const SILENT = "draw a digit on the black square";

export async function start({ manifest, sessions, run, root, controls }) {
  const session = sessions.classifier;
  const pad = element(root, "canvas", { id: "pad", width: 280, height: 280 });
  const bars = element(root, "div", { className: "bars", id: "bars" });
  const clear = control(controls, "<button id='clear'>clear</button>");
  const g = pad.getContext("2d");
  let drawing = false;

  function wipe() { // a blank square is no digit: no probabilities shown for it
    g.fillStyle = "#000";
    g.fillRect(0, 0, pad.width, pad.height);
    bars.textContent = SILENT;
  }

  // the model's input from 28 x 28 grey pixels (0-255): pixel / 127.5 - 1
  async function classify(pixels) {
    const images = new ort.Tensor("float32", Float32Array.from(pixels, (v) => v / 127.5 - 1),
      [1, 1, 28, 28]);
    const logits = (await run(session, { images }))[session.outputNames[0]].data;
    const probabilities = softmax(logits);
    bars.innerHTML = "";
    probabilities.forEach((p, i) => {
      element(bars, "span", { textContent: manifest.classes[i] });
      element(element(bars, "div"), "div", { className: "bar" }).style.width = `${(p * 100).toFixed(1)}%`;
      element(bars, "span", { textContent: p.toFixed(3) });
    });
    return probabilities;
  }

  function drawnPixels() {
    const small = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
    small.getContext("2d").drawImage(pad, 0, 0, 28, 28);
    const rgba = small.getContext("2d").getImageData(0, 0, 28, 28).data;
    return Array.from({ length: 784 }, (_, i) => rgba[i * 4]);
  }

  // put 28 x 28 pixels on the pad (tests, or an image to start from) and classify them
  async function show(pixels) {
    const picture = new ImageData(28, 28);
    pixels.forEach((v, i) => picture.data.set([v, v, v, 255], i * 4));
    const small = Object.assign(document.createElement("canvas"), { width: 28, height: 28 });
    small.getContext("2d").putImageData(picture, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(small, 0, 0, pad.width, pad.height);
    return classify(pixels);
  }

  const at = (event) => {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * (pad.width / box.width),
      (event.clientY - box.top) * (pad.height / box.height)];
  };
  pad.addEventListener("mousedown", (event) => {
    drawing = true;
    g.beginPath();
    g.moveTo(...at(event));
  });
  pad.addEventListener("mousemove", (event) => {
    if (!drawing) return;
    g.strokeStyle = "#fff";
    g.lineWidth = 20;
    g.lineCap = g.lineJoin = "round";
    g.lineTo(...at(event));
    g.stroke();
  });
  window.addEventListener("mouseup", () => {
    if (drawing) classify(drawnPixels());
    drawing = false;
  });
  clear.onclick = wipe;
  wipe();
  return { classify, show, drawnPixels };
}
