// Snake: the trained agent plays greedily, each move's Q value (a DQN) or logit (a PPO
// policy) written on the square it leads to; score and length shown. An arrow key hands
// the snake to you.
import { Snake } from "../envs.js";
import { control, element, tensor } from "../app.js";
import { arrowOf, gameLoop } from "./game.js";

const DY = [0, -1, 0, 1], DX = [1, 0, -1, 0], TURN = [0, 1, 3];
// a game's caps where the run set none: a greedy agent can circle forever without eating
const DEFAULT_MAX_STEPS = 1000;

export const HELP = "The trained agent steers the snake to the red fruit; on the squares around " +
  "its head, each move's score (the highlighted one is taken). Press an arrow key to steer " +
  "yourself (agent plays hands it back); pause, step one move, reset and speed are buttons. " +
  "A game ends at a wall or the snake's own body, or at the step caps shown below.";

export async function start({ manifest, sessions, run, root, controls }) {
  const env = new Snake({ ...manifest.env, max_steps_per_game:
    manifest.env.max_steps_per_game ?? DEFAULT_MAX_STEPS });
  // steps without a fruit: the run's own evaluation cap, or four passes over the board
  const hungry = (manifest.config && manifest.config.algo &&
    manifest.config.algo.eval_max_steps_without_reward) || 4 * env.height * env.width;
  // a Q network (DQN) or a policy (PPO): either way the likeliest move scores highest
  const network = sessions.q_network ? "q_network" : "policy";
  const session = sessions[network], scoreName = network === "q_network" ? "Q" : "logits";
  const cell = Math.max(12, Math.floor(480 / Math.max(env.height, env.width)));
  const canvas = element(element(root, "div", { className: "panel" }), "canvas",
    { width: env.width * cell, height: env.height * cell, id: "board" });
  const readout = element(root, "div", { className: "readout", id: "readout" });
  const agent = control(controls, "<button id='agent'>agent plays</button>");
  let person = null, best = 0, q = null, sinceFruit = 0, ended = "";

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
      ` of ${env.maxSteps}  without a fruit ${sinceFruit} of ${hungry}  best ${best}\n` +
      `${ended || (person ? "you play (arrow keys)" : "agent plays")}\n${scoreName}: ${values}`;
  }

  async function tick(action = null) {
    if (env.done) { // the game over message stayed one tick; a new game, the agent playing
      best = Math.max(best, env.eaten);
      env.reset();
      person = null;
      sinceFruit = 0;
      ended = "";
      q = await qValues();
    }
    const chosen = action ?? (person ? env.turnTowards(person) : q.indexOf(Math.max(...q)));
    const before = env.eaten;
    const { terminated } = env.step(chosen);
    sinceFruit = env.eaten > before ? 0 : sinceFruit + 1;
    if (!env.done && sinceFruit >= hungry) env.done = true;
    if (env.done) {
      const why = terminated ? `${person ? "you" : "the agent"} crashed` : sinceFruit >= hungry
        ? `no fruit in ${hungry} steps` : `the cap of ${env.maxSteps} steps`;
      ended = `game over: ${why}, ${env.eaten} fruits; a new game starts`;
    } else {
      q = await qValues();
    }
    draw();
    return chosen;
  }

  const reset = async () => {
    env.reset();
    person = null;
    sinceFruit = 0;
    ended = "";
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
  return { env, qValues, tick, loop, reset, hungry, ended: () => ended };
}
