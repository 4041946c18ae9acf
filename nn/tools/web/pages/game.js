// What the two game pages share: a loop of ticks with pause, step, speed and reset.
import { control } from "../app.js";

export function gameLoop(controls, { tick, reset, fps }) {
  const loop = { running: true, busy: false, fps };
  const pause = control(controls, "<button id='pause'>pause</button>");
  const step = control(controls, "<button id='step'>step</button>");
  const restart = control(controls, "<button id='reset'>reset</button>");
  const speed = control(controls,
    `<label>speed <input id='speed' type='range' min='1' max='60' value='${fps}'></label>`);
  // one tick at a time, however slow a model call is
  loop.tickOnce = async () => {
    if (loop.busy) return;
    loop.busy = true;
    try {
      await tick();
    } finally {
      loop.busy = false;
    }
  };
  loop.setRunning = (running) => {
    loop.running = running;
    pause.textContent = running ? "pause" : "play";
  };
  pause.onclick = () => loop.setRunning(!loop.running);
  step.onclick = () => {
    loop.setRunning(false);
    loop.tickOnce();
  };
  restart.onclick = () => reset();
  speed.oninput = () => { loop.fps = Number(speed.value); };
  const next = async () => {
    if (loop.running) await loop.tickOnce();
    setTimeout(next, 1000 / loop.fps);
  };
  setTimeout(next, 0);
  return loop;
}

// the arrow key of a keyboard event, or null
export function arrowOf(event) {
  return { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down" }[event.key]
    ?? null;
}
