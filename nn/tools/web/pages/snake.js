// Snake: the trained agent plays greedily, each move's Q value (a DQN) or logit (a PPO
// policy) written on the square it leads to; score and length shown. An arrow key hands
// the snake to you.
import { Snake } from "../envs.js";
import { control, element, tensor } from "../app.js";
import { arrowOf, gameLoop } from "./game.js";

const DY = [0, -1, 0, 1], DX = [1, 0, -1, 0], TURN = [0, 1, 3];

export async function start({ manifest, sessions, run, root, controls }) {
  const env = new Snake(manifest.env);
  // a Q network (DQN) or a policy (PPO): either way the likeliest move scores highest
  const network = sessions.q_network ? "q_network" : "policy";
  const session = sessions[network], scoreName = network === "q_network" ? "Q" : "logits";
  const cell = Math.max(12, Math.floor(480 / Math.max(env.height, env.width)));
  const canvas = element(element(root, "div", { className: "panel" }), "canvas",
    { width: env.width * cell, height: env.height * cell, id: "board" });
  const readout = element(root, "div", { className: "readout", id: "readout" });
  const agent = control(controls, "<button id='agent'>agent plays</button>");
  let person = null, best = 0, q = null;

  async function qValues() {
    const feeds = { [session.inputNames[0]]: tensor("uint8", env.observation(),
      [1, ...env.observationShape()]) };
    return Array.from((await run(session, feeds))[session.outputNames[0]].data);
  }

  function draw() {
    const g = canvas.getContext("2d");
    g.fillStyle = "#fff";
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = "#eee";
    for (let y = 0; y < env.height; y++) {
      for (let x = 0; x < env.width; x++) g.strokeRect(x * cell, y * cell, cell, cell);
    }
    g.fillStyle = "#e74c3c";
    for (const [y, x] of env.fruits) g.fillRect(x * cell + 3, y * cell + 3, cell - 6, cell - 6);
    env.snake.forEach(([y, x], i) => {
      g.fillStyle = i === 0 ? "#1e8449" : "#52be80";
      g.fillRect(x * cell + 1, y * cell + 1, cell - 2, cell - 2);
    });
    if (q && !env.done) { // each move's value on the square it leads to, best in bold
      const [hy, hx] = env.snake[0];
      const top = Math.max(...q);
      g.font = `${Math.max(9, Math.floor(cell / 3.5))}px monospace`;
      g.textAlign = "center";
      TURN.forEach((turn, action) => {
        const heading = (env.heading + turn) % 4, y = hy + DY[heading], x = hx + DX[heading];
        if (y < 0 || y >= env.height || x < 0 || x >= env.width) return;
        g.fillStyle = q[action] === top ? "rgba(52,152,219,0.45)" : "rgba(52,152,219,0.15)";
        g.fillRect(x * cell, y * cell, cell, cell);
        g.fillStyle = "#000";
        g.fillText(q[action].toFixed(1), x * cell + cell / 2, y * cell + cell / 2 + 4);
      });
    }
    const values = q ? env.actionNames.map((n, i) => `${n} ${q[i].toFixed(2)}`).join("  ") : "";
    readout.textContent = `fruits ${env.eaten}  length ${env.snake.length}  steps ${env.steps}` +
      `  best ${best}\n${person ? "you play (arrow keys)" : "agent plays"}\n${scoreName}: ${values}`;
  }

  async function tick(action = null) {
    if (env.done) {
      best = Math.max(best, env.eaten);
      env.reset();
      person = null;
    }
    const chosen = action ?? (person ? env.turnTowards(person) : q.indexOf(Math.max(...q)));
    env.step(chosen);
    if (!env.done) q = await qValues();
    draw();
    return chosen;
  }

  const reset = async () => {
    env.reset();
    person = null;
    q = await qValues();
    draw();
  };
  const loop = gameLoop(controls, { tick: () => tick(), reset, fps: 8 });
  agent.onclick = () => { person = null; draw(); };
  document.addEventListener("keydown", (event) => {
    const arrow = arrowOf(event);
    if (!arrow) return;
    event.preventDefault();
    person = arrow;
    if (!loop.running) loop.tickOnce(); // paused: each press is one move
  });
  await reset();
  return { env, qValues, tick, loop, reset };
}
