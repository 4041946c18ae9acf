// Cart-pole: the trained agent balances the pole; its action probabilities (or, for a
// Q-network, its action values) beside it. Hold an arrow key to push the cart yourself.
import { CartPole } from "../envs.js";
import { control, element, softmax, tensor } from "../app.js";
import { arrowOf, gameLoop } from "./game.js";

export const HELP = "The trained agent pushes the cart left or right to keep the pole up; its " +
  "probability of each push (or, for a DQN, each push's value) below. Hold the left or right " +
  "arrow key to push yourself; pause, step one push, reset and speed are buttons; greedy: " +
  "always the likelier push.";

export async function start({ manifest, sessions, run, root, controls }) {
  const env = new CartPole(manifest.env);
  const network = sessions.policy ? "policy" : "q_network";
  const session = sessions[network];
  const canvas = element(element(root, "div", { className: "panel" }), "canvas",
    { width: 600, height: 300, id: "board" });
  const readout = element(root, "div", { className: "readout", id: "readout" });
  const greedy = control(controls, "<label><input id='greedy' type='checkbox'> greedy</label>");
  let held = null, games = [], last = null;

  // P(action) from the policy (one logit: the book's P(push left) = sigmoid; more:
  // softmax), or Q values
  async function judge(observation) {
    const feeds = { [session.inputNames[0]]: tensor("float32", observation, [1, 4]) };
    const out = Array.from((await run(session, feeds))[session.outputNames[0]].data);
    if (network === "q_network") return { values: out, probabilities: null };
    const left = 1 / (1 + Math.exp(-out[0]));
    const probabilities = out.length === 1 ? [left, 1 - left] : softmax(out);
    return { values: out, probabilities };
  }

  function choose(judged) {
    if (!judged.probabilities || greedy.checked) {
      const scores = judged.probabilities || judged.values;
      return scores.indexOf(Math.max(...scores));
    }
    return Math.random() < judged.probabilities[0] ? 0 : 1;
  }

  function draw() {
    const g = canvas.getContext("2d");
    const [x, , theta] = env.state;
    const scale = canvas.width / (2 * env.xThreshold * 1.2);
    const cartX = canvas.width / 2 + x * scale, cartY = canvas.height * 0.75;
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = "#999";
    g.beginPath();
    g.moveTo(0, cartY + 15);
    g.lineTo(canvas.width, cartY + 15);
    g.stroke();
    g.fillStyle = "#3a7bd5";
    g.fillRect(cartX - 30, cartY - 15, 60, 30);
    const pole = 2 * env.halfLength * scale;
    g.strokeStyle = "#c0392b";
    g.lineWidth = 8;
    g.beginPath();
    g.moveTo(cartX, cartY - 15);
    g.lineTo(cartX + pole * Math.sin(theta), cartY - 15 - pole * Math.cos(theta));
    g.stroke();
    g.lineWidth = 1;
    const shown = last ? (last.probabilities
      ? `P(push left) ${last.probabilities[0].toFixed(3)}  P(push right) ${last.probabilities[1].toFixed(3)}`
      : `Q(push left) ${last.values[0].toFixed(3)}  Q(push right) ${last.values[1].toFixed(3)}`) : "";
    readout.textContent = `step ${env.steps}${held ? `  you push ${held}` : ""}\n${shown}\n` +
      `last games: ${games.slice(-5).join(", ") || "-"} steps`;
  }

  async function tick(action = null) {
    if (env.done) {
      games.push(env.steps);
      env.reset();
    }
    last = await judge(env.observation());
    const chosen = action ?? (held ? (held === "left" ? 0 : 1) : choose(last));
    env.step(chosen);
    draw();
    return chosen;
  }

  const reset = async () => { // the readout describes the new state, paused or not
    env.reset();
    last = await judge(env.observation());
    draw();
  };
  const loop = gameLoop(controls, { tick: () => tick(), reset, fps: 50 });
  document.addEventListener("keydown", (event) => {
    const arrow = arrowOf(event);
    if (arrow !== "left" && arrow !== "right") return;
    event.preventDefault();
    held = arrow;
    if (!loop.running) loop.tickOnce(); // paused: each press is one push
  });
  document.addEventListener("keyup", (event) => {
    if (arrowOf(event) === held) held = null;
  });
  await reset();
  return { env, judge, choose, tick, loop, reset };
}
