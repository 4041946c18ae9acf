// Text: the LSTM writes after a seed, one character at a time with its state carried,
// at the temperature chosen (0: always the likeliest character), streamed as sampled.
import { control, element, softmax, tensor } from "../app.js";

export const HELP = "Write a seed text and press generate: the model goes on one character at a " +
  "time, carrying its state. temperature: 0 always takes the likeliest character, higher " +
  "values take less likely ones more often; length: characters to write; stop ends it.";

export async function start({ manifest, sessions, run, root, controls }) {
  const step = sessions.step;
  const vocabulary = manifest.vocabulary, width = manifest.state_size;
  const ids = new Map(Array.from(vocabulary, (ch, i) => [ch, i]));
  const panel = element(root, "div", { className: "panel" });
  element(panel, "label", { textContent: "seed text" });
  const seed = element(panel, "textarea", { id: "seed", rows: 4, cols: 70,
    value: manifest.seed_text });
  const temperature = control(controls, "<label>temperature <input id='temperature' " +
    "type='range' min='0' max='2' step='0.05' value='0.5'></label><span id='temperature-value'>0.5</span>");
  const shown = document.getElementById("temperature-value");
  temperature.oninput = () => { shown.textContent = temperature.value; };
  const length = control(controls, "<label>length <input id='length' type='number' min='1' " +
    "max='5000' value='300'></label>");
  const go = control(controls, "<button id='generate'>generate</button>");
  const stop = control(controls, "<button id='stop'>stop</button>");
  const message = element(panel, "p", { className: "message", id: "message" });
  const out = element(panel, "div", { id: "text-out" });
  let generation = 0;

  async function next(token, h, c) {
    const o = await run(step, { token: tensor("int64", [token], [1]),
      h: new ort.Tensor("float32", h, [1, width]), c: new ort.Tensor("float32", c, [1, width]) });
    return [o.logits.data, o.h_next.data, o.c_next.data];
  }

  function pick(logits, t) {
    if (t === 0) return logits.indexOf(Math.max(...logits));
    const p = softmax(logits, t);
    let u = Math.random(), i = 0;
    for (; i < p.length - 1 && u >= p[i]; i++) u -= p[i];
    return i;
  }

  // sample `count` characters after `text`; each one goes to `emit` as it is drawn
  async function generate(text, count, t, emit = () => {}) {
    const unknown = [...new Set(Array.from(text).filter((ch) => !ids.has(ch)))];
    if (unknown.length) {
      throw new Error(`the seed has characters this model never saw: ${unknown.map((ch) =>
        JSON.stringify(ch)).join(" ")}; use only characters of its corpus`);
    }
    if (!text.length) throw new Error("give a seed text of at least one character");
    const mine = ++generation; // a newer generation (or stop) ends this one
    let h = new Float32Array(width), c = new Float32Array(width), logits;
    for (const ch of text) [logits, h, c] = await next(ids.get(ch), h, c);
    let written = "", painted = performance.now();
    for (let i = 0; i < count && mine === generation; i++) {
      const id = pick(Array.from(logits), t);
      written += vocabulary[id];
      emit(vocabulary[id]);
      if (performance.now() - painted > 30) { // let the page paint what came so far
        await new Promise((resolve) => setTimeout(resolve, 0));
        painted = performance.now();
      }
      [logits, h, c] = await next(id, h, c);
    }
    return written;
  }

  go.onclick = async () => {
    message.textContent = "";
    out.textContent = "";
    try {
      await generate(seed.value, Number(length.value), Number(temperature.value),
        (ch) => { out.textContent += ch; });
    } catch (err) {
      message.textContent = err.message;
    }
  };
  stop.onclick = () => { generation += 1; };
  await next(0, new Float32Array(width), new Float32Array(width)); // warm, and time, the model
  return { generate };
}
